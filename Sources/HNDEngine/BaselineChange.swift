import Foundation

/// "Biased beyond the untrained network" (docs/3-numbers.md): did P_k rise since the run's
/// baseline pass (its first complete pass, over the same images), by more than the labels would
/// give by chance?
///
/// Why not the plain change D = P_k(t) − P_k(0) = Σ_n c_n·x_nk/N_k with c fixed: c_n =
/// w_t(n)/T_t − w_0(n)/T_0 holds the totals T = Σ_s CS_s, and those move with the labels too — at
/// first order, as much as CS_k does. Permuting the labels (the same permutation for both passes),
/// D's first-order expansion around the observed labels is
/// X(π) = Σ_n u_n·A_{π(n)} + v_n·B_{π(n)}, u = w_t/T_t, v = w_0/T_0,
/// A_i = a^t_{s(i)}/N_{s(i)}, B_i = −a^0_{s(i)}/N_{s(i)}, a^x_j = δ_jk − P_k(x):
/// X(id) = 0 (Σ_j a_j CS_j = 0) and D(π) ≥ D ⇔ X(π) ≥ 0 to first order. X is a linear permutation
/// statistic with the matrix d(n, i) = u_n·A_i + v_n·B_i, whose mean and variance over all
/// permutations are exact (Hoeffding): E X = (Σu·ΣA + Σv·ΣB)/N, Var X = [Σu_c²·ΣA_c² +
/// 2·Σu_c·v_c·ΣA_c·B_c + Σv_c²·ΣB_c²]/(N − 1) (c: centred). p = P(Z ≥ −E X / sd X). At the baseline
/// pass itself u = v and A = −B: X ≡ 0, p = 1. With one pass (v = 0) it is `PermutationNull.stageOne`.
public enum BaselineChange {
    /// Σu, Σv, Σu², Σv², Σuv over the N images of D_g, for one unit and category.
    public struct Sums: Sendable {
        public var count = 0
        public var u = 0.0, v = 0.0, uu = 0.0, vv = 0.0, uv = 0.0
        public init() {}
        @inline(__always) public mutating func add(current u: Double, baseline v: Double) {
            count += 1; self.u += u; self.v += v; uu += u * u; vv += v * v; uv += u * v
        }
    }

    /// The one-sided p of "P_k rose at least as much as observed" for subgroup `k` of a category
    /// whose subgroups have `counts` images in D_g, with P now (`current`) and at the baseline
    /// (`baseline`, per subgroup of the category). 1 when X cannot vary.
    public static func pValue(subgroup k: Int, counts: [Int], current pt: Double, baseline p0: Double, sums: Sums) -> Double {
        guard counts[k] > 0, sums.count > 1 else { return 1 }
        let n = Double(sums.count)
        var a = 0.0, aa = 0.0, b = 0.0, bb = 0.0, ab = 0.0
        for (j, size) in counts.enumerated() where size > 0 {
            let at = (j == k ? 1 : 0) - pt, a0 = (j == k ? 1 : 0) - p0, m = Double(size)
            a += at; aa += at * at / m
            b -= a0; bb += a0 * a0 / m
            ab -= at * a0 / m
        }
        let mean = (sums.u * a + sums.v * b) / n
        let ucc = max(0, sums.uu - sums.u * sums.u / n), vcc = max(0, sums.vv - sums.v * sums.v / n)
        let uvc = sums.uv - sums.u * sums.v / n
        let acc = max(0, aa - a * a / n), bcc = max(0, bb - b * b / n), abc = ab - a * b / n
        let variance = (ucc * acc + 2 * uvc * abc + vcc * bcc) / (n - 1)
        // The two passes' terms cancel when nothing changed: below this X is rounding.
        let scale = sums.uu * aa + sums.vv * bb
        guard variance > 1e-12 * scale + Double.leastNormalMagnitude else { return 1 }
        return 0.5 * erfc(-mean / (variance.squareRoot() * 2.0.squareRoot()))
    }
}

/// The baseline a layer's change test compares with: the maxima [C, N] of the run's first
/// complete pass, and what the test needs of them (`BaselineWeights`), built once.
public enum BaselineError: Error, Equatable, CustomStringConvertible {
    case shape(expected: Int, got: Int)
    case incomplete(seen: Int, total: Int)

    public var description: String {
        switch self {
        case let .shape(e, g): "the baseline holds \(g) maxima, the layer needs \(e) (units × dictionary images)"
        case let .incomplete(s, t): "the baseline pass is incomplete (\(s) of \(t) images): it must hold every image"
        }
    }
}

extension LayerAccumulator {
    /// Uses `maxima` ([C, N] unit-major, as `maxima`) of the run's first complete pass as the
    /// baseline, with its `weights` when they were built already (otherwise each complete
    /// snapshot builds them: `buildBaselineWeights` keeps them). The layer's unit count must be
    /// known (after its first batch) or given.
    public mutating func setBaseline(maxima baseline: [Float], units c: Int? = nil, weights: BaselineWeights? = nil) throws(BaselineError) {
        let expected = (c ?? units) * index.imageCount
        guard expected > 0, baseline.count == expected else { throw .shape(expected: expected, got: baseline.count) }
        if let weights, !weights.fits(units: c ?? units, imageCount: index.imageCount) {
            throw .shape(expected: expected, got: weights.units * weights.imageCount)
        }
        baselineMaxima = baseline
        baselineWeights = weights
    }

    /// Uses the maxima of `other`, a complete pass of the same layer, as the baseline.
    public mutating func setBaseline(from other: LayerAccumulator) throws(BaselineError) {
        guard other.imagesSeen == other.index.imageCount else { throw .incomplete(seen: other.imagesSeen, total: other.index.imageCount) }
        try setBaseline(maxima: other.maxima, units: other.units)
    }

    /// Builds and keeps the baseline's weights, so that complete snapshots only do their own
    /// pass's work; returns them (nil without a baseline or before the unit count is known).
    @discardableResult
    public mutating func buildBaselineWeights() -> BaselineWeights? {
        guard let baselineMaxima, units > 0 else { return nil }
        if let baselineWeights, baselineWeights.fits(units: units, imageCount: index.imageCount) { return baselineWeights }
        baselineWeights = try? BaselineWeights(maxima: baselineMaxima, units: units, index: index)
        return baselineWeights
    }

    public mutating func clearBaseline() { baselineMaxima = nil; baselineWeights = nil }

    /// Merging shards: the baseline maxima of `other`'s images join this state's, as the maxima
    /// do, when both have a baseline; otherwise the merged state has none (`ShardMerge` says so).
    mutating func mergeBaseline(of other: LayerAccumulator) {
        guard var mine = baselineMaxima, let theirs = other.baselineMaxima, mine.count == theirs.count else {
            clearBaseline()
            return
        }
        let n = index.imageCount, c = mine.count / max(n, 1)
        let images = (0..<n).filter { other.seen[$0] }
        baselineMaxima = nil // mine is the only reference while it changes
        baselineWeights = nil // of other maxima
        for u in 0..<c { for image in images { mine[u * n + image] = theirs[u * n + image] } }
        baselineMaxima = mine
    }
}
