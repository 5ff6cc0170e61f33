import Foundation

/// One complete snapshot's change tests against the baseline (`BaselineChange`): per unit and
/// subgroup the raw p-value and the observed change D, written by the units' workers into
/// disjoint slices, then adjusted across the layer (Benjamini–Hochberg) into the snapshot.
final class ChangeTestOutput: @unchecked Sendable {
    let baseline: [Float]
    /// The baseline's w_0, T_0 and P(0) (`BaselineWeights`): the layer's, or built for this
    /// snapshot when it has none; nil only when the maxima equal the baseline's (every p is 1).
    let weights: BaselineWeights?
    let imageCount: Int, subgroupCount: Int
    /// [C, G] raw p-values (NaN: not tested) and D = P(t) − P(0).
    let raw: UnsafeMutableBufferPointer<Double>
    let rise: UnsafeMutableBufferPointer<Double>

    /// nil when the layer has no usable baseline (none yet, or of another shape).
    init?(_ layer: LayerAccumulator) {
        guard let baseline = layer.baselineMaxima, layer.units > 0, baseline.count == layer.units * layer.index.imageCount else { return nil }
        self.baseline = baseline
        if let kept = layer.baselineWeights, kept.fits(units: layer.units, imageCount: layer.index.imageCount) {
            weights = kept
        } else {
            // The baseline pass itself (the same buffer: compared at once) needs no weights.
            weights = baseline == layer.maxima ? nil : try? BaselineWeights(maxima: baseline, units: layer.units, index: layer.index)
        }
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
    func testChange(unit u: Int, category: Int, sets: SeenSets, into out: ChangeTestOutput, now: StageOneColumn) {
        let members = sets.categoryImages[category]
        let subgroups = index.dictionary.subgroupsOfCategory[category]
        let g = out.subgroupCount
        // A unit whose maxima equal the baseline's (every unit at the baseline pass itself)
        // has D = 0 and X ≡ 0: p = 1, without looking at the baseline's weights.
        guard let weights = out.weights, !out.baseline.withUnsafeBufferPointer({ baseline in
            memcmp(baseline.baseAddress! + u * out.imageCount, now.column, out.imageCount * MemoryLayout<Float>.stride) == 0
        }) else {
            for s in subgroups { out.rise[u * g + s] = 0; out.raw[u * g + s] = 1 }
            return
        }
        let counts = subgroups.map { sets.subgroupCounts[$0] }
        let w0 = weights.weights(unit: u, category: category), total0 = weights.total(unit: u, category: category)
        let span = Double(now.hi) - Double(now.lo)
        var sums = BaselineChange.Sums()
        for (position, weight0) in zip(members.indices, w0) {
            let w = now.ranks[position] * (Double(now.column[Int(members[position])]) - Double(now.lo)) / span
            sums.add(current: w / now.total, baseline: total0 > 0 ? weight0 / total0 : 0)
        }
        for (i, s) in subgroups.enumerated() {
            let p0 = weights.probability(unit: u, subgroup: s), pt = now.probabilities[s]
            out.rise[u * g + s] = pt - p0
            out.raw[u * g + s] = BaselineChange.pValue(subgroup: i, counts: counts, current: pt, baseline: p0, sums: sums)
        }
    }
}
