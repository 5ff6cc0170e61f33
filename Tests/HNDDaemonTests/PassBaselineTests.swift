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
        let (_, snapshot) = b.finish(first, now: 2)!
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
