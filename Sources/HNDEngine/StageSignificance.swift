/// What the significance tests of one complete snapshot share across units: each category's
/// subgroups and their image counts, each region's concepts and their co-occurrence over D_r.
struct NullSets: Sendable {
    /// Subgroup indices of each category, in dictionary order.
    let categorySubgroups: [[Int]]
    /// Concept indices of each region, in dictionary order.
    let regionConcepts: [[Int]]
    /// Per region, [K_r × K_r] images of D_r where both concepts are present (N_k on the diagonal).
    let cooccurrence: [[Int]]

    init(_ sets: SeenSets, index: DictionaryIndex) {
        categorySubgroups = index.dictionary.subgroupsOfCategory
        let concepts = index.regionConcepts.map { mask in (0..<64).filter { mask & (1 << UInt64($0)) != 0 } }
        regionConcepts = concepts
        cooccurrence = concepts.indices.map { r in
            let k = concepts[r].count
            var counts = [Int](repeating: 0, count: k * k)
            for image in sets.regionImages[r] {
                let bits = index.presentConcepts[Int(image)]
                let present = concepts[r].indices.filter { bits & (1 << UInt64(concepts[r][$0])) != 0 }
                for i in present { for j in present { counts[i * k + j] += 1 } }
            }
            return counts
        }
    }
}

/// The raw (unadjusted) p-values of one snapshot's tests, [C, G] and [C, L]; NaN where no test was
/// made. What Benjamini–Hochberg adjusts, and what the permutation check compares with.
public struct RawPValues: Sendable, Equatable {
    public var global: [Double]
    public var local: [Double]
}

/// Where one unit's raw p-values go (complete snapshots only).
struct SignificanceOutput {
    let sets: NullSets
    let global: UnsafeMutableBufferPointer<Double>
    let local: UnsafeMutableBufferPointer<Double>
    /// The change tests against the baseline pass, when the layer has one.
    var change: ChangeTestOutput? = nil
}

extension LayerAccumulator {
    /// Stage I's tests of unit `u` in one category, from its P (already in `globalProb`).
    /// `probabilities` holds P of every subgroup (global index), in double precision.
    func testStageOne(unit u: Int, category: Int, counts: [Int], weights: PermutationNull.Weights,
                      probabilities: [Double], into out: SignificanceOutput) {
        let g = index.dictionary.subgroupCount
        let subgroups = out.sets.categorySubgroups[category]
        let categoryCounts = subgroups.map { counts[$0] }
        for (i, s) in subgroups.enumerated() {
            let p = probabilities[s]
            out.global[u * g + s] = PermutationNull.stageOne(probability: p, subgroup: i, counts: categoryCounts, weights: weights)
        }
    }

    /// Stage III's tests of unit `u` in region `r`, from its P (already in `localProb`).
    /// `probabilities` holds P of every concept (global index), in double precision.
    func testStageThree(unit u: Int, region r: Int, iou: [Double], counts: [Int], weights: PermutationNull.Weights,
                        probabilities: [Double], into out: SignificanceOutput) {
        let l = index.dictionary.conceptCount
        let concepts = out.sets.regionConcepts[r]
        let regionIoU = concepts.map { iou[$0] }, regionCounts = concepts.map { counts[$0] }
        for (i, c) in concepts.enumerated() {
            let p = probabilities[c]
            out.local[u * l + c] = PermutationNull.stageThree(probability: p, concept: i, iou: regionIoU, counts: regionCounts,
                                                              cooccurrence: out.sets.cooccurrence[r], weights: weights)
        }
    }

    /// Adjusts the raw p-values across the layer (one family per stage) and sets the
    /// "biased/paired and significant" flags.
    static func applyFalseDiscovery(_ raw: RawPValues, to snap: inout LayerSnapshot) {
        let global = FalseDiscovery.adjusted(raw.global), local = FalseDiscovery.adjusted(raw.local)
        let q = FalseDiscovery.rate
        snap.significanceTested = true
        snap.globalP = global.map { $0.isNaN ? 1 : Float($0) }
        snap.localP = local.map { $0.isNaN ? 1 : Float($0) }
        snap.globalSignificant = zip(snap.globalBiased, global).map { $0 != 0 && $1 <= q ? 1 : 0 }
        snap.localSignificant = zip(snap.localPaired, local).map { $0 != 0 && $1 <= q ? 1 : 0 }
    }
}
