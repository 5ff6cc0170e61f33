import Foundation
import HNDTestSupport
import Testing
@testable import HNDEngine

/// The baseline's weights built once (`BaselineWeights`) give the change test exactly what
/// building them at the snapshot gives, and are dropped with the maxima they come from.
@Suite struct BaselineWeightsTests {
    @Test func keptWeightsGiveTheSameSnapshotBitForBit() throws {
        var lazy = try BaselineChangeTests.layerWithBaseline()
        var kept = lazy
        let built = kept.buildBaselineWeights()
        let weights = try #require(built)
        #expect(weights.units == lazy.units && weights.bytes > 0)
        let a = lazy.snapshot(), b = kept.snapshot()
        #expect(a.changeTested && b.changeTested)
        #expect(a.globalChangeP.map(\.bitPattern) == b.globalChangeP.map(\.bitPattern))
        #expect(a.globalBeyondUntrained == b.globalBeyondUntrained)
        #expect(a == b)
        lazy.clearBaseline()
        #expect(lazy.baselineWeights == nil && lazy.baselineMaxima == nil)
    }

    @Test func weightsOfAnotherShapeAreRefused() throws {
        var layer = try BaselineChangeTests.layerWithBaseline()
        let built = layer.buildBaselineWeights()
        let weights = try #require(built)
        var small = PlantedLayer(images: 600, biased: 2, paired: 0, units: 8)
        small.effect = 0
        var other = try small.layer()
        #expect(throws: BaselineError.self) { try other.setBaseline(maxima: other.maxima, weights: weights) }
        #expect(throws: BaselineError.self) { try BaselineWeights(maxima: [1, 2], units: 2, index: layer.index) }
    }
}
