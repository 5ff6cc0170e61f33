import CHNDKernels

/// An exact running top-k of one unit's raw activations: enough to give numpy's linear
/// (1 − q) quantile of all values seen, as long as k covers the order statistics the quantile
/// needs (see `QuantileRule`). Values enter a buffer of 1.5k and are cut back to the k largest
/// when it fills, so the amortised cost is O(1) per value (a buffer of 2k selected half as often:
/// a unit's buffer is the size of its top-k's, C of them, and every byte of it stays resident
/// for the pass). Merges by union.
public struct TopValues: Sendable, Equatable {
    public let capacity: Int
    /// The candidates are `storage[..<filled]`; room for `limit` values plus one batch of `slack`.
    private var storage: [Float]
    /// Values the buffer takes before it is cut back to the k largest: k and half as many again.
    private var limit: Int { Self.limit(capacity: capacity) }
    private static func limit(capacity: Int) -> Int { capacity + max(capacity / 2, 1) }
    private var filled = 0
    /// Unordered; after `compact()` exactly the `min(capacity, seen)` largest values.
    public var values: [Float] { Array(storage[..<filled]) }
    /// The k-th largest value seen so far (once k values were seen), else −∞. Never decreases;
    /// never exceeds the k-th largest value of the final population.
    public private(set) var lowerBound: Float = -.infinity

    /// `slack`: the most values one `offer(valuesOf:…)` adds (a map's size).
    public init(capacity: Int, slack: Int = 1) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = [Float](repeating: 0, count: Self.limit(capacity: capacity) + max(slack, 1))
    }

    /// Bytes of its buffer.
    public var bytes: Int { storage.capacity * MemoryLayout<Float>.stride }

    public static func == (a: TopValues, b: TopValues) -> Bool {
        a.capacity == b.capacity && a.lowerBound == b.lowerBound && a.values == b.values
    }

    /// Offers one value; values not above `lowerBound` cannot change the top k as a multiset.
    public mutating func offer(_ v: Float) {
        if v > lowerBound {
            storage[filled] = v
            filled += 1
            if filled >= limit { compact() }
        }
    }

    /// Offers the `count` (≤ slack) values of `map` above `lowerBound`, in one vector pass; sets
    /// bit p of `above` (one word per 64 values) for each position above it.
    @inline(__always)
    mutating func offer(valuesOf map: UnsafePointer<Float>, count: Int, above: UnsafeMutablePointer<UInt64>) {
        let bound = lowerBound, at = filled
        filled += storage.withUnsafeMutableBufferPointer { Int(hndd_above(map, Int32(count), bound, $0.baseAddress! + at, above)) }
        if filled >= limit { compact() }
    }

    /// Cuts the buffer back to the k largest and raises `lowerBound`.
    public mutating func compact() {
        guard filled > capacity else {
            if filled == capacity, let m = values.min() { lowerBound = max(lowerBound, m) }
            return
        }
        let n = filled, k = capacity
        let kth = storage.withUnsafeMutableBufferPointer { buffer in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { spare in
                hndd_keep_largest(buffer.baseAddress!, Int64(n), Int64(k), spare.baseAddress!)
            }
        }
        lowerBound = max(lowerBound, kth)
        filled = k
    }

    public mutating func merge(_ other: TopValues) {
        precondition(other.capacity == capacity)
        for v in other.values { offer(v) }
        lowerBound = max(lowerBound, other.lowerBound)
        compact()
    }

    /// The `count` largest values kept, sorted descending.
    public func largest(_ count: Int) -> [Float] {
        Array(values.sorted(by: >).prefix(count))
    }

    /// numpy's quantile of a population of n values whose largest this keeps, in O(k): two
    /// order statistics by selection, no sort.
    public func quantile(_ rule: QuantileRule, population n: Int) -> Float? {
        guard n > 0 else { return nil }
        var copy = values
        return copy.withUnsafeMutableBufferPointer { buffer in
            let count = buffer.count
            return withUnsafeTemporaryAllocation(of: Float.self, capacity: max(count, 1)) { spare in
                // The first rank asked for is selected (the same selection as `compact`); the
                // other is a neighbouring rank, read off the two sides of that selection.
                var selected = -1, selectedValue: Float = 0
                return rule.value(population: n) { rank in
                    precondition(rank < count, "the top-k holds \(count) values, the quantile needs rank \(rank)")
                    if selected < 0 {
                        // buffer[...rank] becomes the rank + 1 largest.
                        selectedValue = hndd_keep_largest(buffer.baseAddress!, Int64(count), Int64(rank + 1), spare.baseAddress!)
                        selected = rank
                    }
                    if rank == selected { return selectedValue }
                    precondition(abs(rank - selected) == 1)
                    // The next smaller value: the largest of the rest.
                    if rank > selected { return buffer[(selected + 1)...].max()! }
                    // The next larger value: the second smallest of the selected ones.
                    var smallest = Float.infinity, second = Float.infinity
                    for v in buffer[...selected] {
                        if v < smallest { second = smallest; smallest = v } else if v < second { second = v }
                    }
                    return second
                }
            }
        }
    }

    /// A top-k from its values (unordered, at least the k largest seen) and bound, as a state
    /// holds them. A state written when the buffer held up to 2k values may hold more than this
    /// buffer takes: they are cut back to the k largest first, raising the bound to the k-th.
    public static func restore(capacity: Int, values: [Float], lowerBound: Float, slack: Int = 1) -> TopValues? {
        guard values.count < 2 * capacity else { return nil }
        var t = TopValues(capacity: capacity, slack: slack)
        var values = values, bound = lowerBound
        if values.count >= t.limit {
            let kth = values.withUnsafeMutableBufferPointer { buffer in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: buffer.count) { spare in
                    hndd_keep_largest(buffer.baseAddress!, Int64(buffer.count), Int64(capacity), spare.baseAddress!)
                }
            }
            values.removeLast(values.count - capacity)
            bound = max(bound, kth)
        }
        t.storage.replaceSubrange(0..<values.count, with: values)
        t.filled = values.count
        t.lowerBound = bound
        return t
    }
}

/// numpy's default (linear) quantile, expressed in "ranks from the top" so it can be answered
/// from a top-k: for n values and quantile p = 1 − q, the virtual index is p·(n − 1) in ascending
/// order, interpolating between its floor and the next order statistic.
public struct QuantileRule: Sendable, Equatable {
    public let quantile: Double // p, e.g. 0.995

    public init(upperTail q: Double) { quantile = 1 - q }

    /// How many of the largest values the quantile of n values needs.
    public func valuesNeeded(population n: Int) -> Int {
        guard n > 0 else { return 1 }
        let lower = Int((quantile * Double(n - 1)).rounded(.down))
        return n - lower
    }

    /// The quantile of a population of n values, given (at least) its `valuesNeeded(n)` largest
    /// values sorted descending; nil when n is 0. Interpolates in Float as numpy does for float32
    /// data, so thresholds agree bit for bit.
    public func value(population n: Int, largestDescending top: [Float]) -> Float? {
        value(population: n) { top[$0] }
    }

    /// The same, given the value of each rank from the top (0 = largest) it asks for.
    public func value(population n: Int, rankFromTop: (Int) -> Float) -> Float? {
        guard n > 0 else { return nil }
        let virtual = Double(n - 1) * quantile
        let lowerIndex = Int(virtual.rounded(.down))
        let upperIndex = min(lowerIndex + 1, n - 1)
        let gamma = virtual - Double(lowerIndex)
        // Ascending index i is rank n − 1 − i from the top.
        let below = rankFromTop(n - 1 - lowerIndex)
        let above = rankFromTop(n - 1 - upperIndex)
        let diff = above - below
        return gamma >= 0.5 ? above - diff * Float(1 - gamma) : below + diff * Float(gamma)
    }
}
