import Foundation
import Testing
@testable import HNDDaemon
@testable import HNDEngine

/// The baseline bookkeeping of "biased beyond the untrained network": each run's layer takes the
/// maxima of its first complete pass, gives them to its later passes, and keeps them across a
/// checkpoint even when no pass is open.
@Suite struct PassBaselineTests {
    func book() -> PassBook {
        PassBook(index: DictionaryIndex(bookDictionary()), options: .init(), passTimeout: 100, supersededAfter: 5)
    }

    @Test func theFirstCompletePassIsTheBaselineOfTheLaterOnes() throws {
        var b = book()
        let first = PassKey(run: "r", layer: "l", step: 0), partial = PassKey(run: "r", layer: "l", step: 5)
        try b.push(partial, [0, 1], at: 0)      // open before the first pass completes
        try b.push(first, [0, 1, 2, 3, 4], at: 1)
        let (_, snapshot, _) = b.finish(first, now: 2)!
        // The baseline pass is tested against itself: nothing changed.
        #expect(snapshot.changeTested && snapshot.globalChangeP.allSatisfy { $0 == 1 } && !snapshot.globalBeyondUntrained.contains(1))
        let maxima = try #require(b.baselines[RunLayer(run: "r", layer: "l")])
        #expect(b.open[partial]!.accumulator.baselineMaxima == maxima)
        let later = PassKey(run: "r", layer: "l", step: 9)
        try b.push(later, [4], at: 3)
        #expect(b.open[later]!.accumulator.baselineMaxima == maxima)
        // Another run, or an incomplete pass, sets no baseline.
        try b.push(PassKey(run: "other", layer: "l", step: 0), [0], at: 3)
        #expect(b.open[PassKey(run: "other", layer: "l", step: 0)]!.accumulator.baselineMaxima == nil)
        _ = b.finish(partial, now: 4)
        #expect(b.baselines.count == 1)
    }

    @Test func baselinesSurviveACheckpointWithoutOpenPasses() throws {
        var b = book()
        let first = PassKey(run: "r", layer: "l", step: 0)
        try b.push(first, [0, 1, 2, 3, 4], at: 1)
        _ = b.finish(first, now: 2)
        #expect(b.open.isEmpty)
        let path = NSTemporaryDirectory() + "hndd-checkpoint-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Checkpoint.write(b, to: path)
        var restored = book()
        _ = try Checkpoint.read(path, into: &restored)
        #expect(restored.baselines == b.baselines)
        let next = PassKey(run: "r", layer: "l", step: 1)
        try restored.push(next, [0, 1, 2, 3, 4], at: 3)
        try b.push(next, [0, 1, 2, 3, 4], at: 3)
        #expect(restored.snapshot(of: restored.open[next]!, now: 4) == b.snapshot(of: b.open[next]!, now: 4))
        #expect(restored.snapshot(of: restored.open[next]!, now: 4).changeTested)
        // A checkpoint written without the section (as before it) loads without baselines.
        try Checkpoint.write(passes: [], finished: [], index: b.index, options: b.options, to: path)
        var old = book()
        _ = try Checkpoint.read(path, into: &old)
        #expect(old.baselines.isEmpty)
    }
}

/// The change test's weights: built once per baseline off the latency path, given to the open
/// passes, and kept for at most `limit` run-layers (least recently used first, never one with an
/// open pass).
@Suite struct BaselineWeightsCacheTests {
    func book(limit: Int) -> PassBook {
        PassBook(index: DictionaryIndex(bookDictionary()), options: .init(), passTimeout: 100, supersededAfter: 5,
                 keptBaselineWeights: limit)
    }

    @Test func weightsAreBuiltAfterTheBaselinePassAndGivenToLaterPasses() throws {
        var b = book(limit: 6)
        let first = PassKey(run: "r", layer: "l", step: 0), open = PassKey(run: "r", layer: "l", step: 1)
        try b.push(open, [0, 1], at: 0)
        try b.push(first, [0, 1, 2, 3, 4], at: 1)
        _ = b.finish(first, now: 2)
        #expect(b.open[open]!.accumulator.baselineWeights == nil && b.baselineWeights.pending == [RunLayer(first)])
        let built = b.prepareBaselineWeights(clock: { 0 })
        #expect(built.map(\.runLayer) == [RunLayer(first)] && b.baselineWeights.pending.isEmpty)
        #expect(b.open[open]!.accumulator.baselineWeights != nil)
        let later = PassKey(run: "r", layer: "l", step: 2)
        try b.push(later, [3], at: 3)
        #expect(b.open[later]!.accumulator.baselineWeights != nil)
        #expect(b.prepareBaselineWeights(clock: { 0 }).isEmpty)
    }

    @Test func theLeastRecentlyUsedRunLayerWithoutOpenPassLosesItsWeights() throws {
        var b = book(limit: 2)
        for run in ["a", "b", "c"] {
            let key = PassKey(run: run, layer: "l", step: 0)
            try b.push(key, [0, 1, 2, 3, 4], at: 1)
            _ = b.finish(key, now: 2)
            _ = b.prepareBaselineWeights(clock: { 0 })
        }
        #expect(Set(b.baselineWeights.kept.keys) == [RunLayer(run: "b", layer: "l"), RunLayer(run: "c", layer: "l")])
        #expect(b.baselines.count == 3) // the maxima stay: a later pass of "a" builds its weights again
        let again = PassKey(run: "a", layer: "l", step: 1)
        try b.push(again, [0], at: 3)
        #expect(b.baselineWeights.pending == [RunLayer(run: "a", layer: "l")])
        _ = b.prepareBaselineWeights(clock: { 0 })
        #expect(b.open[again]!.accumulator.baselineWeights != nil)
        #expect(Set(b.baselineWeights.kept.keys) == [RunLayer(run: "a", layer: "l"), RunLayer(run: "c", layer: "l")])
    }
}
