/// A first-in first-out list whose taken slots are cleared at once, so that a taken message's
/// memory goes with it rather than when the array is next compacted (once more than half of it is
/// taken). The ingest queue and the layer workers' inboxes hold their items in one; not
/// thread-safe: its owner locks.
struct ClearingFIFO<Element> {
    private var slots: [Element?] = []
    private var head = 0

    var count: Int { slots.count - head }
    var isEmpty: Bool { head == slots.count }

    /// Queues `element` behind everything queued.
    mutating func append(_ element: Element) { slots.append(element) }

    /// Queues `element` before everything queued.
    mutating func prepend(_ element: Element) {
        if head > 0 {
            head -= 1
            slots[head] = element
        } else {
            slots.insert(element, at: 0)
        }
    }

    /// The first element, taken out; nil when empty.
    mutating func popFirst() -> Element? {
        guard head < slots.count else { return nil }
        let element = slots[head]
        slots[head] = nil
        head += 1
        if head > 64, head * 2 > slots.count { slots.removeFirst(head); head = 0 }
        return element
    }
}
