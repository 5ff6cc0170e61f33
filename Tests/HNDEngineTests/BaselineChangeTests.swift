import Foundation
import HNDTestSupport
import Testing
@testable import HNDEngine

/// "Biased beyond the untrained network" (`BaselineChange`) on planted layers: the baseline is the
/// same planted layer without its bias (`PlantedLayer` draws the same noise for any `biased`).
@Suite struct BaselineChangeTests {
    static let planted = PlantedLayer(images: 600, biased: 10, paired: 0, units: 40)

    /// The planted layer now, with the unbiased one as its baseline.
    static func layerWithBaseline() throws -> LayerAccumulator {
        var now = try planted.layer()
        var untrained = planted
        untrained.effect = 0
        try now.setBaseline(from: try untrained.layer())
        return now
    }

    @Test func unitsThatBecameBiasedAreFoundTheOthersHavePOne() throws {
        let s = try Self.layerWithBaseline().snapshot()
        #expect(s.changeTested)
        for u in 0..<Self.planted.biased {
            #expect(s.globalChangeP[u * 4] < 1e-3, "unit \(u): change p \(s.globalChangeP[u * 4])")
            #expect(s.globalBeyondUntrained[u * 4] == s.globalSignificant[u * 4], "unit \(u)")
            #expect(s.isBiasedBeyondUntrained(unit: u) == s.isSignificantlyBiased(unit: u))
        }
        #expect((0..<Self.planted.biased).filter { s.isBiasedBeyondUntrained(unit: $0) }.count >= 8)
        // Noise units have the same maps in both passes: nothing changed.
        for u in Self.planted.biased..<Self.planted.units {
            #expect(s.globalChangeP[(u * 4)..<(u * 4 + 4)].allSatisfy { $0 == 1 }, "unit \(u)")
            #expect(!s.isBiasedBeyondUntrained(unit: u))
        }
    }

    @Test func theBaselinePassItselfHasPOneAndNoFlag() throws {
        var layer = try Self.planted.layer()
        try layer.setBaseline(from: layer)
        let s = layer.snapshot()
        #expect(s.changeTested)
        #expect(s.globalChangeP.allSatisfy { $0 == 1 })
        #expect(!s.globalBeyondUntrained.contains(1))
        // The paper's and the significance flags are those of a layer without a baseline.
        let plain = try Self.planted.layer().snapshot()
        #expect(s.globalBiased == plain.globalBiased && s.globalSignificant == plain.globalSignificant && s.globalP == plain.globalP)
        #expect(!plain.changeTested && plain.globalChangeP.allSatisfy(\.isNaN))
    }

    @Test func partialPassesAndWrongShapesAreNotTested() throws {
        var random = SplitMix(seed: 4)
        let d = Self.planted.dictionary(&random)
        var layer = LayerAccumulator(layer: "planted", index: DictionaryIndex(d), options: .init(quantile: 0.5))
        try add(&layer, ids: [0, 1, 2], maps: [[1, 2], [3, 4], [5, 6]], units: 2)
        #expect(throws: BaselineError.self) { try layer.setBaseline(maxima: [1, 2, 3]) }
        try layer.setBaseline(maxima: [Float](repeating: 1, count: 2 * d.imageCount))
        let s = layer.snapshot()
        #expect(!s.complete && !s.changeTested && s.globalChangeP.allSatisfy(\.isNaN))
        #expect(throws: BaselineError.incomplete(seen: 3, total: d.imageCount)) { try layer.setBaseline(from: layer) }
    }

    @Test func theBaselineSurvivesTheStateAndOldStatesLoadWithout() throws {
        let layer = try Self.layerWithBaseline()
        let restored = try LayerAccumulator(decoding: layer.encodedState(), index: layer.index, options: layer.options)
        #expect(restored.baselineMaxima == layer.baselineMaxima)
        #expect(restored.snapshot() == layer.snapshot())
        // A state without the section (as every state before it) restores without a baseline.
        var plain = layer
        plain.clearBaseline()
        let old = try LayerAccumulator(decoding: plain.encodedState(), index: layer.index, options: layer.options)
        #expect(old.baselineMaxima == nil && !old.snapshot().changeTested)
        var garbage = plain.encodedState()
        garbage += [1, 2, 3, 4]
        #expect(throws: StateError.self) { try LayerAccumulator(decoding: garbage, index: layer.index, options: layer.options) }
    }

    /// Shards of a pass, each with the baseline of its own images, merge into the whole pass with
    /// the whole baseline; a shard without one leaves the merged pass without.
    @Test func shardsMergeTheirBaselines() throws {
        let whole = try Self.layerWithBaseline()
        let n = whole.index.imageCount
        func shard(_ keep: (Int) -> Bool, baseline: Bool) throws -> LayerAccumulator {
            var part = LayerAccumulator(layer: whole.layer, index: whole.index, options: whole.options)
            let ids = (0..<n).filter(keep)
            let maps = ids.map { i in (0..<whole.units).map { whole.maxima[$0 * n + i] } }
            try add(&part, ids: ids.map(Int64.init), maps: maps, units: whole.units)
            if baseline {
                var mine = [Float](repeating: 0, count: whole.units * n)
                for u in 0..<whole.units { for i in ids { mine[u * n + i] = whole.baselineMaxima![u * n + i] } }
                try part.setBaseline(maxima: mine)
            }
            return part
        }
        var merged = try shard({ $0 % 2 == 0 }, baseline: true)
        try merged.merge(try shard({ $0 % 2 == 1 }, baseline: true))
        #expect(merged.baselineMaxima == whole.baselineMaxima)
        let s = merged.snapshot(), expected = whole.snapshot()
        #expect(s.globalChangeP == expected.globalChangeP && s.globalBeyondUntrained == expected.globalBeyondUntrained)
        var lacking = try shard({ $0 % 2 == 0 }, baseline: true)
        try lacking.merge(try shard({ $0 % 2 == 1 }, baseline: false))
        #expect(lacking.baselineMaxima == nil && !lacking.snapshot().changeTested)
    }

    /// The closed form against the matrix form it comes from, on a small case with explicit sums.
    @Test func closedFormEqualsTheHoeffdingMatrix() {
        var random = SplitMix(seed: 11)
        let labels = (0..<30).map { _ in Int(random.next() % 3) }
        let counts = (0..<3).map { s in labels.filter { $0 == s }.count }
        let u = (0..<30).map { _ in Double(random.uniform()) }, v = (0..<30).map { _ in Double(random.uniform()) }
        let (pt, p0, k) = (0.4, 0.3, 1)
        var sums = BaselineChange.Sums()
        for i in 0..<30 { sums.add(current: u[i], baseline: v[i]) }
        // d(n, i) = u_n A_i + v_n B_i, double-centred.
        let a = labels.map { ((($0 == k) ? 1 : 0) - pt) / Double(counts[$0]) }
        let b = labels.map { -((($0 == k) ? 1 : 0) - p0) / Double(counts[$0]) }
        var d = [[Double]](repeating: [Double](repeating: 0, count: 30), count: 30)
        for n in 0..<30 { for i in 0..<30 { d[n][i] = u[n] * a[i] + v[n] * b[i] } }
        let rows = d.map { $0.reduce(0, +) / 30 }, columns = (0..<30).map { i in d.map { $0[i] }.reduce(0, +) / 30 }
        let grand = rows.reduce(0, +) / 30
        var variance = 0.0, mean = 0.0
        for n in 0..<30 { for i in 0..<30 { mean += d[n][i] / 30; variance += pow(d[n][i] - rows[n] - columns[i] + grand, 2) / 29 } }
        let expected = 0.5 * erfc(-mean / (variance.squareRoot() * 2.0.squareRoot()))
        let p = BaselineChange.pValue(subgroup: k, counts: counts, current: pt, baseline: p0, sums: sums)
        #expect(abs(p - expected) < 1e-12, "closed form \(p), matrix \(expected)")
    }
}
