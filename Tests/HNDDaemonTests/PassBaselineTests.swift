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

extension PassBook {
    /// Builds the wanted weights here and now, as a worker's background builds do; returns the
    /// run-layers built.
    mutating func buildBaselineWeights() -> [RunLayer] {
        takeBaselineWeightsJobs().map { job in
            attachBaselineWeights(job.build(), for: job.runLayer)
            return job.runLayer
        }
    }
}

/// The change test's weights: built once per baseline off the latency path, given to the open
/// passes, and kept for at most `limit` run-layers of the daemon, whichever workers' books hold
/// them (least recently used first, never one with an open pass on any book).
@Suite struct BaselineWeightsCacheTests {
    func book(limit: Int) -> PassBook { book(sharing: SharedBaselineWeights(limit: limit)) }

    func book(sharing weights: SharedBaselineWeights) -> PassBook {
        PassBook(index: DictionaryIndex(bookDictionary()), options: .init(), passTimeout: 100, supersededAfter: 5,
                 baselineWeights: weights)
    }

    /// A complete pass of `run` and `layer` in `book`, its weights built.
    func completePass(_ run: String, _ layer: String, step: Int64 = 0, in book: inout PassBook) throws {
        let key = PassKey(run: run, layer: layer, step: step)
        try book.push(key, [0, 1, 2, 3, 4], at: 1)
        _ = book.finish(key, now: 2)
        _ = book.buildBaselineWeights()
    }

    @Test func weightsAreBuiltAfterTheBaselinePassAndGivenToLaterPasses() throws {
        var b = book(limit: 6)
        let first = PassKey(run: "r", layer: "l", step: 0), open = PassKey(run: "r", layer: "l", step: 1)
        try b.push(open, [0, 1], at: 0)
        try b.push(first, [0, 1, 2, 3, 4], at: 1)
        _ = b.finish(first, now: 2)
        #expect(b.open[open]!.accumulator.baselineWeights == nil && b.pendingBaselineWeights == [RunLayer(first)])
        #expect(b.buildBaselineWeights() == [RunLayer(first)] && b.pendingBaselineWeights.isEmpty)
        #expect(b.open[open]!.accumulator.baselineWeights != nil)
        let later = PassKey(run: "r", layer: "l", step: 2)
        try b.push(later, [3], at: 3)
        #expect(b.open[later]!.accumulator.baselineWeights != nil)
        #expect(b.pendingBaselineWeights.isEmpty && b.buildBaselineWeights().isEmpty)
    }

    @Test func theLeastRecentlyUsedRunLayerWithoutOpenPassLosesItsWeights() throws {
        var b = book(limit: 2)
        for run in ["a", "b", "c"] { try completePass(run, "l", in: &b) }
        #expect(Set(b.baselineWeights.now.kept.keys) == [RunLayer(run: "b", layer: "l"), RunLayer(run: "c", layer: "l")])
        #expect(b.baselines.count == 3) // the maxima stay: a later pass of "a" builds its weights again
        let again = PassKey(run: "a", layer: "l", step: 1)
        try b.push(again, [0], at: 3)
        #expect(b.pendingBaselineWeights == [RunLayer(run: "a", layer: "l")])
        _ = b.buildBaselineWeights()
        #expect(b.open[again]!.accumulator.baselineWeights != nil)
        #expect(Set(b.baselineWeights.now.kept.keys) == [RunLayer(run: "a", layer: "l"), RunLayer(run: "c", layer: "l")])
    }

    @Test func twoWorkersBooksTogetherKeepAtMostTheLimit() throws {
        let shared = SharedBaselineWeights(limit: 2)
        var first = book(sharing: shared), second = book(sharing: shared)
        /// What the two books keep, as each sees it.
        func kept() -> Set<RunLayer> { Set(first.baselineWeights.now.kept.keys).union(second.baselineWeights.now.kept.keys) }
        for run in ["a", "b"] {
            try completePass(run, "l1", in: &first)
            try completePass(run, "l2", in: &second)
            #expect(kept().count <= 2)
        }
        // The two most recently built of four run-layers, whichever book built them.
        #expect(kept() == [RunLayer(run: "b", layer: "l1"), RunLayer(run: "b", layer: "l2")])
        // A run-layer with an open pass in one book keeps its weights while the other builds, though
        // it is the least recently used...
        let open = PassKey(run: "b", layer: "l1", step: 1)
        try first.push(open, [0], at: 3)
        #expect(first.open[open]!.accumulator.baselineWeights != nil)
        try completePass("c", "l2", in: &second)
        try completePass("d", "l2", in: &second)
        #expect(kept() == [RunLayer(run: "b", layer: "l1"), RunLayer(run: "d", layer: "l2")])
        // ... and only while that pass is open.
        _ = first.finish(open, now: 4)
        try completePass("e", "l2", in: &second)
        #expect(kept() == [RunLayer(run: "d", layer: "l2"), RunLayer(run: "e", layer: "l2")])
    }

    @Test func weightsKeptBeyondTheLimitForOpenPassesGoWhenThePassesEnd() throws {
        var cache = BaselineWeightsCache(limit: 1)
        let weights = try BaselineWeights(maxima: (0..<10).map(Float.init), units: 2, index: DictionaryIndex(bookDictionary()))
        let a = RunLayer(run: "a", layer: "l"), b = RunLayer(run: "b", layer: "l")
        cache.setOpen(true, a)
        cache.setOpen(true, b)
        cache.keep(weights, for: a)
        cache.keep(weights, for: b)
        #expect(Set(cache.kept.keys) == [a, b]) // both passes hold them: dropping either frees nothing
        cache.setOpen(false, a)
        #expect(Set(cache.kept.keys) == [b])
    }
}
