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
    public static func forEachAverageRank(values: UnsafePointer<Float>, members: [Int32],
                                          scratch: inout [Int32], _ body: (Int, Double) -> Void) {
        let count = members.count
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: 0..<Int32(count))
        scratch.sort { values[Int(members[Int($0)])] < values[Int(members[Int($1)])] }
        var start = 0
        while start < count {
            let v = values[Int(members[Int(scratch[start])])]
            var end = start + 1
            while end < count, values[Int(members[Int(scratch[end])])] == v { end += 1 }
            // Ranks start+1 … end share their mean.
            let rank = Double(start + 1 + end) / 2
            for k in start..<end { body(Int(scratch[k]), rank) }
            start = end
        }
    }
}
