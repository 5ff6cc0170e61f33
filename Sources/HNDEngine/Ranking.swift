/// Rank-weighted concept scores (Stages I and III): for a set of images with their unit maxima,
/// min–max normalise over one set, rank (average ranks on ties, smallest = 1) over another, and
/// add up R·MS' per label.
public enum RankedScores {
    /// Min and max of `values` at `indices`; nil for an empty set.
    @inlinable public static func range(of values: UnsafePointer<Float>, at indices: some Sequence<Int32>) -> (lo: Float, hi: Float)? {
        var lo = Float.infinity, hi = -Float.infinity
        var any = false
        for i in indices { let v = values[Int(i)]; lo = min(lo, v); hi = max(hi, v); any = true }
        return any ? (lo, hi) : nil
    }

    /// Calls `body(position, averageRank)` for every element of `members` (indices into
    /// `values`), where position indexes `members`. Ranks are 1-based, ties get their average.
    ///
    /// Sorting is a radix sort of 64-bit keys — the value's bits, made to order as the floats
    /// do, above the member's position — in three passes of 11 bits over the value part: no
    /// comparisons, and equal values are adjacent.
    public static func forEachAverageRank(values: UnsafePointer<Float>, members: [Int32],
                                          scratch: inout [UInt64], _ body: (Int, Double) -> Void) {
        let count = members.count
        guard count > 0 else { return }
        if scratch.count < 2 * count { scratch = [UInt64](repeating: 0, count: 2 * count) }
        scratch.withUnsafeMutableBufferPointer { buffer in
            var keys = buffer.baseAddress!, spare = keys + count
            for (position, image) in members.enumerated() {
                keys[position] = UInt64(orderedBits(values[Int(image)])) << 32 | UInt64(position)
            }
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 2048) { histogram in
                for shift in [32, 43, 54] as [UInt64] {
                    histogram.initialize(repeating: 0)
                    for i in 0..<count { histogram[Int(keys[i] >> shift & 2047)] += 1 }
                    var total = 0
                    for digit in 0..<2048 { let n = histogram[digit]; histogram[digit] = total; total += n }
                    for i in 0..<count {
                        let key = keys[i], digit = Int(key >> shift & 2047)
                        spare[histogram[digit]] = key
                        histogram[digit] += 1
                    }
                    swap(&keys, &spare)
                }
            }
            var start = 0
            while start < count {
                let v = keys[start] >> 32
                var end = start + 1
                while end < count, keys[end] >> 32 == v { end += 1 }
                // Ranks start+1 … end share their mean.
                let rank = Double(start + 1 + end) / 2
                for k in start..<end { body(Int(truncatingIfNeeded: keys[k] & 0xFFFF_FFFF), rank) }
                start = end
            }
        }
    }

    /// A float's bits as an unsigned integer that orders as the floats do (−0 and +0 equal).
    @inline(__always) static func orderedBits(_ v: Float) -> UInt32 {
        let bits = (v + 0).bitPattern // −0 + 0 = +0
        return bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    }
}
