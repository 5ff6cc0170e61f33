import Foundation
import HNDTestSupport
import Testing
@testable import HNDEngine

/// A planted fixture: one category of four subgroups (age), one region of four concepts, 1×1 maps.
/// Units 0..<biased respond to subgroup 0 by `effect` (in noise standard deviations), the next
/// `paired` units to concept 2's presence; the rest are noise.
struct PlantedLayer {
    let images: Int
    let biased: Int
    let paired: Int
    let units: Int
    var effect: Float = 0.8
    var seed: UInt64 = 1

    func dictionary(_ random: inout SplitMix) -> FaceDictionary {
        var labels: [Int32] = [], present: [Int8] = [], ellipses: [Float] = []
        for _ in 0..<images {
            labels.append(Int32(random.next() % 4))
            for _ in 0..<4 {
                let on = random.uniform() < 0.5
                present.append(on ? 1 : 0)
                ellipses += on ? [0.3 + 0.4 * random.uniform(), 0.5, 0.06, 0, 0.06] : [.nan, .nan, .nan, .nan, .nan]
            }
        }
        return FaceDictionary(
            categories: ["age"], subgroups: ["0-20", "20-40", "40-60", "60+"], subgroupCategory: [0, 0, 0, 0],
            regions: ["eye"], concepts: ["left_eye", "right_eye", "eyeglasses", "bags"], conceptRegion: [0, 0, 0, 0],
            conceptType: [0, 0, 1, 1], globalLabel: labels, localLabel: present, ellipse: ellipses, maskSize: 4)
    }

    /// The accumulator after one complete pass (a quantile of 0.5 so that every unit localises).
    func layer() throws -> LayerAccumulator {
        var random = SplitMix(seed: seed)
        let d = dictionary(&random)
        var layer = LayerAccumulator(layer: "planted", index: DictionaryIndex(d), options: .init(quantile: 0.5))
        var maps: [[Float]] = []
        for n in 0..<images {
            maps.append((0..<units).map { u in
                var v = Self.gaussian(&random)
                if u < biased, d.globalLabel[n] == 0 { v += effect }
                if u >= biased, u < biased + paired, d.localLabel[n * 4 + 2] == 1 { v += effect }
                return v
            })
        }
        try add(&layer, ids: (0..<images).map(Int64.init), maps: maps, units: units)
        return layer
    }

    static func gaussian(_ random: inout SplitMix) -> Float {
        let a = max(random.uniform(), 1e-7), b = random.uniform()
        return (-2 * log(a)).squareRoot() * cos(2 * .pi * b)
    }
}

@Suite struct SignificanceTests {
    @Test func plantedBiasedAndPairedUnitsAreSignificant() throws {
        let planted = PlantedLayer(images: 600, biased: 10, paired: 10, units: 60)
        let s = try planted.layer().snapshot()
        #expect(s.significanceTested)
        for u in 0..<planted.biased {
            #expect(s.globalP[u * 4] < 1e-3, "unit \(u): adjusted p \(s.globalP[u * 4])")
            #expect(s.globalSignificant[u * 4] == s.globalBiased[u * 4])
        }
        for u in planted.biased..<(planted.biased + planted.paired) {
            #expect(s.region[u] == 0)
            #expect(s.localP[u * 4 + 2] < 1e-3, "unit \(u): adjusted p \(s.localP[u * 4 + 2])")
            #expect(s.localSignificant[u * 4 + 2] == s.localPaired[u * 4 + 2])
        }
        let noise = (planted.biased + planted.paired)..<planted.units
        let falseBiased = noise.filter { s.isSignificantlyBiased(unit: $0) }.count
        let falsePaired = noise.filter { s.isSignificantlyPaired(unit: $0) }.count
        #expect(falseBiased + falsePaired <= 2, "\(falseBiased) noise units significantly biased, \(falsePaired) paired")
    }

    /// With no planted unit every null is true: BH keeps P(any discovery) at most q. Over 60 seeds
    /// at q = 0.05 about 3 may have one; 9 or more has probability < 0.2 %.
    @Test func shuffledLabelsAreNotSignificantAtTheStatedRate() throws {
        var seedsWithDiscovery = 0, seedsWithFlag = 0
        for seed in 1...60 {
            let s = try PlantedLayer(images: 300, biased: 0, paired: 0, units: 40, seed: UInt64(seed)).layer().snapshot()
            let smallest = min(s.globalP.min() ?? 1, s.localP.min() ?? 1)
            if Double(smallest) <= FalseDiscovery.rate { seedsWithDiscovery += 1 }
            if s.globalSignificant.contains(1) || s.localSignificant.contains(1) { seedsWithFlag += 1 }
        }
        #expect(seedsWithDiscovery <= 8, "\(seedsWithDiscovery) of 60 null seeds had a discovery")
        #expect(seedsWithFlag <= seedsWithDiscovery)
    }

    /// The analytic p-values against 4,000 explicit permutations (sgemm), for every tested pair:
    /// within the permutation estimate's binomial error (4 standard errors) plus 0.01.
    @Test func permutationAndAnalyticValuesAgree() throws {
        for seed in [3, 4] as [UInt64] {
            let planted = PlantedLayer(images: 400, biased: 4, paired: 4, units: 24, effect: 0.3, seed: seed)
            let layer = try planted.layer()
            let (s, raw) = layer.snapshotWithRawPValues()
            let raw_ = try #require(raw)
            let b = 4000
            let permuted = layer.permutationPValues(of: s, permutations: b, seed: seed)
            var compared = 0, inTail = 0
            for (analytic, exact) in zip(raw_.global + raw_.local, permuted.global + permuted.local) where !analytic.isNaN {
                #expect(!exact.isNaN)
                let tolerance = 4 * (max(exact, 1 / Double(b)) * (1 - exact) / Double(b)).squareRoot() + 0.01
                #expect(abs(analytic - exact) <= tolerance, "analytic \(analytic), permutation \(exact)")
                // In the tail, where BH decides, the ratio too (p ≥ 20/B: at most ±50 % error).
                if exact >= 20 / Double(b), exact < 0.05 {
                    #expect(analytic / exact > 0.5 && analytic / exact < 2, "tail: analytic \(analytic), permutation \(exact)")
                    inTail += 1
                }
                compared += 1
            }
            #expect(inTail >= 5, "only \(inTail) pairs in the tail")
            #expect(compared == planted.units * 8)
        }
    }

    @Test func partialSnapshotsSkipTheTests() throws {
        var random = SplitMix(seed: 9)
        let planted = PlantedLayer(images: 50, biased: 1, paired: 1, units: 3)
        var layer = LayerAccumulator(layer: "p", index: DictionaryIndex(planted.dictionary(&random)))
        try add(&layer, ids: [0, 1, 2], maps: [[1, 2, 3], [2, 3, 1], [3, 1, 2]], units: 3)
        let (s, raw) = layer.snapshotWithRawPValues()
        #expect(raw == nil)
        #expect(!s.significanceTested)
        #expect(s.globalP.allSatisfy(\.isNaN) && s.localP.allSatisfy(\.isNaN))
        #expect(!s.globalSignificant.contains(1) && !s.localSignificant.contains(1))
    }

    @Test func benjaminiHochbergByHand() {
        // m = 4 tested: sorted 0.01, 0.02, 0.03, 0.5 → 0.04, 0.04, 0.04, 0.5 (monotone from the top).
        let adjusted = FalseDiscovery.adjusted([0.03, .nan, 0.5, 0.01, 0.02])
        #expect(adjusted[1].isNaN)
        for (a, e) in zip([adjusted[0], adjusted[2], adjusted[3], adjusted[4]], [0.04, 0.5, 0.04, 0.04]) {
            #expect(abs(a - e) < 1e-12)
        }
    }

    @Test func linearPermutationMomentsByHand() {
        // w = 1, 2, 3; h = 1, 0, 0: X = w at the image given h = 1, uniform over {1, 2, 3}.
        // E = 2, Var = 2/3 → P(X ≥ 0) = Φ(2/√(2/3)).
        var w = PermutationNull.Weights()
        for v in [1.0, 2, 3] { w.add(v) }
        let p = PermutationNull.upperTail(weights: w, hSum: 1, hSumOfSquares: 1)
        let expected = 0.5 * erfc(-2 / ((2.0 / 3).squareRoot() * 2.0.squareRoot()))
        #expect(abs(p - expected) < 1e-12)
        // A constant X carries no evidence.
        #expect(PermutationNull.upperTail(weights: w, hSum: 3, hSumOfSquares: 3) == 1)
    }
}
