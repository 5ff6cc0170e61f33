import Foundation

/// One complete snapshot's change tests against the baseline (`BaselineChange`): per unit and
/// subgroup the raw p-value and the observed change D, written by the units' workers into
/// disjoint slices, then adjusted across the layer (Benjamini–Hochberg) into the snapshot.
final class ChangeTestOutput: @unchecked Sendable {
    let baseline: [Float]
    let imageCount: Int, subgroupCount: Int
    /// [C, G] raw p-values (NaN: not tested) and D = P(t) − P(0).
    let raw: UnsafeMutableBufferPointer<Double>
    let rise: UnsafeMutableBufferPointer<Double>

    /// nil when the layer has no usable baseline (none yet, or of another shape).
    init?(_ layer: LayerAccumulator) {
        guard let baseline = layer.baselineMaxima, layer.units > 0, baseline.count == layer.units * layer.index.imageCount else { return nil }
        self.baseline = baseline
        imageCount = layer.index.imageCount
        subgroupCount = layer.index.dictionary.subgroupCount
        raw = .allocate(capacity: layer.units * subgroupCount)
        raw.initialize(repeating: .nan)
        rise = .allocate(capacity: layer.units * subgroupCount)
        rise.initialize(repeating: 0)
    }

    deinit { raw.deallocate(); rise.deallocate() }

    /// Adjusts the raw p-values across the layer and sets `globalChangeP` (1 where untested) and
    /// `globalBeyondUntrained` = biased ∧ significant ∧ adjusted change-p ≤ q ∧ D > 0.
    func apply(to snap: inout LayerSnapshot) {
        let adjusted = FalseDiscovery.adjusted(Array(raw)), q = FalseDiscovery.rate
        snap.changeTested = true
        snap.globalChangeP = adjusted.map { $0.isNaN ? 1 : Float($0) }
        snap.globalBeyondUntrained = adjusted.indices.map { i in
            snap.globalBiased[i] != 0 && snap.globalSignificant[i] != 0 && adjusted[i] <= q && rise[i] > 0 ? 1 : 0
        }
    }
}

/// The baseline pass's average ranks over a category's images, kept while the next category
/// shares them (as Stage I's ranks are).
struct BaselineRanks {
    var ranks: [Double] = []
    var ranked = -1
    var scratch: [UInt64] = []
}

/// Stage I's view of one unit in one category, as the change test needs it.
struct StageOneColumn {
    let column: UnsafePointer<Float>
    /// Average ranks (by position in the category's images) and the min–max range over D_g.
    let ranks: [Double]
    let lo: Float, hi: Float
    /// Σ_s CS_s(t), and P_s(t) per subgroup (global index).
    let total: Double
    let probabilities: [Double]
}

extension LayerAccumulator {
    /// The change tests of unit `u` in `category`, current pass `now` against the baseline.
    func testChange(unit u: Int, category: Int, sets: SeenSets, into out: ChangeTestOutput, cache: inout BaselineRanks,
                    now: StageOneColumn) {
        let members = sets.categoryImages[category], labels = sets.categoryLabels[category]
        let subgroups = index.dictionary.subgroupsOfCategory[category]
        let counts = subgroups.map { sets.subgroupCounts[$0] }
        out.baseline.withUnsafeBufferPointer { baseline in
            let column0 = baseline.baseAddress! + u * out.imageCount
            // A unit whose maxima equal the baseline's (every unit at the baseline pass itself)
            // has D = 0 and X ≡ 0: p = 1, without ranking the baseline again.
            if memcmp(column0, now.column, out.imageCount * MemoryLayout<Float>.stride) == 0 {
                for s in subgroups { out.rise[u * out.subgroupCount + s] = 0; out.raw[u * out.subgroupCount + s] = 1 }
                return
            }
            var w0 = [Double](repeating: 0, count: members.count)
            var score0 = [Double](repeating: 0, count: index.dictionary.subgroupCount)
            if let (lo0, hi0) = RankedScores.range(of: column0, at: members), hi0 > lo0 {
                if cache.ranked != sets.sameImagesAs[category] {
                    if cache.ranks.count < members.count { cache.ranks = [Double](repeating: 0, count: members.count) }
                    RankedScores.forEachAverageRank(values: column0, members: members, scratch: &cache.scratch) { position, rank in
                        cache.ranks[position] = rank
                    }
                    cache.ranked = sets.sameImagesAs[category]
                }
                let span0 = Double(hi0) - Double(lo0)
                for position in members.indices {
                    w0[position] = cache.ranks[position] * (Double(column0[Int(members[position])]) - Double(lo0)) / span0
                    score0[Int(labels[position])] += w0[position]
                }
            }
            var total0 = 0.0
            for s in subgroups {
                score0[s] = sets.subgroupCounts[s] > 0 ? score0[s] / Double(sets.subgroupCounts[s]) : 0
                total0 += score0[s]
            }
            let span = Double(now.hi) - Double(now.lo)
            var sums = BaselineChange.Sums()
            for position in members.indices {
                let w = now.ranks[position] * (Double(now.column[Int(members[position])]) - Double(now.lo)) / span
                sums.add(current: w / now.total, baseline: total0 > 0 ? w0[position] / total0 : 0)
            }
            let g = out.subgroupCount
            for (i, s) in subgroups.enumerated() {
                let p0 = total0 > 0 ? score0[s] / total0 : 0, pt = now.probabilities[s]
                out.rise[u * g + s] = pt - p0
                out.raw[u * g + s] = BaselineChange.pValue(subgroup: i, counts: counts, current: pt, baseline: p0, sums: sums)
            }
        }
    }
}
