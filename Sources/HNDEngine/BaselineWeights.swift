import Dispatch
import Foundation

/// Everything about the baseline pass that the change test (`BaselineChange`) needs, computed
/// once from its maxima: per unit, the rank weights w_0 over each distinct D_g (categories that
/// label the same images share them, as Stage I shares its ranks), T_0 per category and P(0) per
/// subgroup. The baseline is fixed for the run, so a later complete snapshot only does its own
/// pass's work instead of ranking the baseline again (docs/performance.md, issue 17).
///
/// The change test runs at complete snapshots only, so these are over every dictionary image.
/// The arithmetic is the one the test did per snapshot, in the same order: bit-identical.
public struct BaselineWeights: Sendable {
    public let units: Int
    public let imageCount: Int
    /// Per category, where its w_0 start in `weights`: the block of the first category with the
    /// same images (`SeenSets.sameImagesAs`), [C, members] unit-major.
    let blockStart: [Int]
    let memberCount: [Int]
    let weights: [Double]
    /// T_0 = Σ_s CS_s(0) per unit and category, [C, categories].
    let totals: [Double]
    /// P_s(0) per unit and subgroup, [C, G] (0 where T_0 = 0).
    let probabilities: [Double]

    /// Bytes held: what keeping them costs the daemon per run's layer.
    public var bytes: Int { (weights.count + totals.count + probabilities.count) * MemoryLayout<Double>.stride }

    /// From the baseline maxima [C, N] (unit-major) of a layer with `units` units.
    public init(maxima: [Float], units c: Int, index: DictionaryIndex) throws(BaselineError) {
        let n = index.imageCount
        guard c > 0, maxima.count == c * n else { throw .shape(expected: c * n, got: maxima.count) }
        let sets = SeenSets(index: index, seen: [Bool](repeating: true, count: n))
        units = c
        imageCount = n
        memberCount = sets.categoryImages.map(\.count)
        var starts = [Int](repeating: 0, count: memberCount.count), size = 0
        for k in starts.indices {
            if sets.sameImagesAs[k] == k { starts[k] = size; size += c * memberCount[k] } else { starts[k] = starts[sets.sameImagesAs[k]] }
        }
        blockStart = starts
        var weights = [Double](repeating: 0, count: size)
        var totals = [Double](repeating: 0, count: c * memberCount.count)
        var probabilities = [Double](repeating: 0, count: c * index.dictionary.subgroupCount)
        let subgroups = index.dictionary.subgroupsOfCategory
        maxima.withUnsafeBufferPointer { maxima in
            weights.withUnsafeMutableBufferPointer { w in
                totals.withUnsafeMutableBufferPointer { t in
                    probabilities.withUnsafeMutableBufferPointer { p in
                        let out = Output(maxima: maxima.baseAddress!, weights: w.baseAddress!, totals: t.baseAddress!,
                                         probabilities: p.baseAddress!, starts: starts)
                        DispatchQueue.concurrentPerform(iterations: c) { u in
                            out.fill(unit: u, imageCount: n, sets: sets, subgroups: subgroups)
                        }
                    }
                }
            }
        }
        self.weights = weights
        self.totals = totals
        self.probabilities = probabilities
    }

    /// Whether these were built for a layer of this shape.
    func fits(units c: Int, imageCount n: Int) -> Bool { units == c && imageCount == n }

    /// w_0 of unit `u` over `category`'s images, by position.
    func weights(unit u: Int, category: Int) -> ArraySlice<Double> {
        let start = blockStart[category] + u * memberCount[category]
        return weights[start..<(start + memberCount[category])]
    }

    func total(unit u: Int, category: Int) -> Double { totals[u * memberCount.count + category] }

    func probability(unit u: Int, subgroup s: Int) -> Double { probabilities[u * (probabilities.count / units) + s] }

    /// The buffers the units' workers fill, each unit its own disjoint slices.
    private struct Output: @unchecked Sendable {
        let maxima: UnsafePointer<Float>
        let weights, totals, probabilities: UnsafeMutablePointer<Double>
        let starts: [Int]

        /// One unit's w_0, T_0 and P(0): what `testChange` computed at every snapshot before.
        func fill(unit u: Int, imageCount n: Int, sets: SeenSets, subgroups: [[Int]]) {
            var scratch: [UInt64] = []
            let column0 = maxima + u * n, categories = sets.categoryImages.count, g = sets.subgroupCounts.count
            for category in sets.categoryImages.indices {
                let members = sets.categoryImages[category], labels = sets.categoryLabels[category]
                let w0 = weights + starts[category] + u * members.count
                if sets.sameImagesAs[category] == category, let (lo0, hi0) = RankedScores.range(of: column0, at: members), hi0 > lo0 {
                    let span0 = Double(hi0) - Double(lo0)
                    RankedScores.forEachAverageRank(values: column0, members: members, scratch: &scratch) { position, rank in
                        w0[position] = rank * (Double(column0[Int(members[position])]) - Double(lo0)) / span0
                    }
                }
                var score0 = [Double](repeating: 0, count: g)
                for position in members.indices { score0[Int(labels[position])] += w0[position] }
                var total0 = 0.0
                for s in subgroups[category] {
                    score0[s] = sets.subgroupCounts[s] > 0 ? score0[s] / Double(sets.subgroupCounts[s]) : 0
                    total0 += score0[s]
                }
                totals[u * categories + category] = total0
                for s in subgroups[category] { probabilities[u * g + s] = total0 > 0 ? score0[s] / total0 : 0 }
            }
        }
    }
}
