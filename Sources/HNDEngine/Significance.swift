import Foundation

/// How likely a Stage I or Stage III probability would reach its value if the labels (subgroup
/// labels within D_g, or the images' concept presence within D_r) carried no information, with
/// the rank weights w_n = R_n·MS'_n held fixed.
///
/// Why this works analytically: "P_k ≥ p" is the same event as "Σ_j a_j·m_j ≥ 0", with m_j the
/// mean weight of label j's images (times IoU_j in Stage III) and a_j = δ_jk − p. That sum is a
/// *linear permutation statistic* X = Σ_n w_n·h_{π(n)} (h_i = Σ_j a_j·x_ij / N_j, x the image's
/// labels), whose mean and variance under a uniform permutation π are exact and cheap:
/// E X = Σw·Σh / N, Var X = Σ(w − w̄)²·Σ(h − h̄)² / (N − 1). Hoeffding's combinatorial central
/// limit theorem makes X normal for large N, so p ≈ P(Z ≥ −E X / sd X). The observed X is 0 by
/// construction. `PermutationCheck` computes the same p-values by B explicit permutations (one
/// sgemm) so that this approximation is tested, not assumed.
public enum PermutationNull {
    /// The fixed weights w_n of one unit over the permuted set, as the tests need them.
    public struct Weights: Sendable {
        public var count = 0
        public var sum = 0.0
        public var sumOfSquares = 0.0

        public init() {}
        @inline(__always) public mutating func add(_ w: Double) { count += 1; sum += w; sumOfSquares += w * w }
        /// Σ(w − w̄)².
        public var centred: Double { count > 0 ? max(0, sumOfSquares - sum * sum / Double(count)) : 0 }
    }

    /// P(X ≥ 0) for X = Σ_n w_n·h_{π(n)} under a uniform permutation π (normal approximation with
    /// the exact permutation moments); `hSum`, `hSumOfSquares` are Σh and Σh² over the same N images.
    /// 1 when X cannot vary (no evidence either way).
    public static func upperTail(weights w: Weights, hSum: Double, hSumOfSquares: Double) -> Double {
        let n = Double(w.count)
        guard w.count > 1 else { return 1 }
        let hCentred = max(0, hSumOfSquares - hSum * hSum / n)
        let variance = w.centred * hCentred / (n - 1)
        let mean = w.sum * hSum / n
        // Below this X is constant up to rounding: its sums carry ~1e-16 relative error.
        guard variance > 1e-20 * (w.sumOfSquares * hSumOfSquares) + Double.leastNormalMagnitude else { return 1 }
        return 0.5 * erfc(-mean / (variance.squareRoot() * 2.0.squareRoot()))
    }

    /// Stage I: the p-value of P_s = `probability` for subgroup `s` of a category whose subgroups
    /// have `counts` images (N_t) in D_g; subgroups without images score 0 and take no part.
    public static func stageOne(probability p: Double, subgroup s: Int, counts: [Int], weights: Weights) -> Double {
        guard counts[s] > 0 else { return 1 }
        var hSum = 0.0, hSquares = 0.0
        for (t, n) in counts.enumerated() where n > 0 {
            let a = (t == s ? 1 : 0) - p
            hSum += a
            hSquares += a * a / Double(n)
        }
        return upperTail(weights: weights, hSum: hSum, hSumOfSquares: hSquares)
    }

    /// Stage III: the p-value of P_c = `probability` for concept `c` (an index into the region's
    /// K concepts), with IoU_k, N_k and the region's co-occurrence counts C[k·K + k'] over D_r
    /// (C[k·K + k] = N_k); concepts without images take no part.
    public static func stageThree(probability p: Double, concept c: Int, iou: [Double], counts: [Int],
                                  cooccurrence: [Int], weights: Weights) -> Double {
        let k = counts.count
        guard counts[c] > 0 else { return 1 }
        var a = [Double](repeating: 0, count: k)
        for j in 0..<k where counts[j] > 0 { a[j] = iou[j] * ((j == c ? 1 : 0) - p) / Double(counts[j]) }
        var hSum = 0.0, hSquares = 0.0
        for i in 0..<k where counts[i] > 0 {
            hSum += a[i] * Double(counts[i])
            for j in 0..<k where counts[j] > 0 { hSquares += a[i] * a[j] * Double(cooccurrence[i * k + j]) }
        }
        return upperTail(weights: weights, hSum: hSum, hSumOfSquares: hSquares)
    }
}

/// Benjamini–Hochberg control of the false-discovery rate across a layer's tests.
public enum FalseDiscovery {
    /// q: a pairing is significant when its adjusted p-value is at most this.
    public static let rate = 0.05

    /// BH-adjusted p-values: p_(i)·m/i made monotone from the largest down, at most 1. NaN marks a
    /// pair that was not tested: it stays NaN and does not count in m.
    public static func adjusted(_ p: [Double]) -> [Double] {
        var order = p.indices.filter { !p[$0].isNaN }
        order.sort { p[$0] < p[$1] }
        var out = [Double](repeating: .nan, count: p.count)
        let m = Double(order.count)
        var running = 1.0
        for rank in stride(from: order.count, to: 0, by: -1) {
            let i = order[rank - 1]
            running = min(running, p[i] * m / Double(rank))
            out[i] = running
        }
        return out
    }
}
