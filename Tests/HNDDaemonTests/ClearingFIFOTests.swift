import Testing
@testable import HNDDaemon

@Suite struct ClearingFIFOTests {
    @Test func takesInOrderWithPrependsFirstAcrossCompactions() {
        var fifo = ClearingFIFO<Int>()
        for i in 0..<200 { fifo.append(i) }
        for i in 0..<150 { #expect(fifo.popFirst() == i) } // past the compaction point
        fifo.prepend(-1)
        fifo.append(200)
        #expect(fifo.count == 52)
        #expect(fifo.popFirst() == -1)
        for i in 150...200 { #expect(fifo.popFirst() == i) }
        #expect(fifo.isEmpty && fifo.popFirst() == nil)
        fifo.prepend(7) // into an empty, compacted list
        #expect(fifo.popFirst() == 7)
    }

    /// A taken element is released at once, not at the next compaction.
    @Test func aTakenElementIsNotRetained() {
        final class Payload {}
        var fifo = ClearingFIFO<Payload>()
        weak var watched: Payload?
        do {
            let payload = Payload()
            watched = payload
            fifo.append(payload)
            fifo.append(Payload())
        }
        _ = fifo.popFirst()
        #expect(watched == nil)
    }
}
