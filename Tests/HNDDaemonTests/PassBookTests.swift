import Foundation
import Testing
@testable import HNDDaemon
@testable import HNDEngine

/// Five images, one concept: enough to drive the pass bookkeeping.
func bookDictionary() -> FaceDictionary {
    FaceDictionary(categories: ["g"], subgroups: ["a", "b"], subgroupCategory: [0, 0], regions: ["r"], concepts: ["c"],
                   conceptRegion: [0], conceptType: [0], globalLabel: [0, 1, 0, 1, 0], localLabel: [1, 0, 1, -1, 1],
                   ellipse: [0.5, 0.5, 0.01, 0, 0.01, .nan, .nan, .nan, .nan, .nan, 0.4, 0.4, 0.01, 0, 0.01,
                             .nan, .nan, .nan, .nan, .nan, 0.6, 0.6, 0.02, 0, 0.01], maskSize: 8)
}

extension PassBook {
    @discardableResult
    mutating func push(_ key: PassKey, _ ids: [Int64], units: Int = 2, at now: Double) throws(Rejection) -> BatchOutcome {
        let values = ids.flatMap { id in (0..<(units * 4)).map { Float(id) + Float($0) * 0.1 } }
        return try values.withUnsafeBufferPointer { v throws(Rejection) in
            try ingest(key, imageIDs: ids, units: units, height: 2, width: 2, values: v, now: now)
        }
    }
}

@Suite struct PassBookTests {
    let key = PassKey(run: "r", layer: "layer1", step: 10)

    func book() -> PassBook {
        PassBook(index: DictionaryIndex(bookDictionary()), options: .init(), passTimeout: 100, supersededAfter: 5)
    }

    @Test func aPassPredictsItsCompletionFromItsRate() throws {
        var b = book()
        try b.push(key, [0], at: 10)
        #expect(b.open[key]!.expectedSecondsToComplete == nil) // one batch: no rate yet
        try b.push(key, [1], at: 12)
        // Two of five images in 2 s: three more take 3 s.
        #expect(b.open[key]!.expectedSecondsToComplete == 3)
    }

    @Test func aPassIsDueWhenEveryImageArrived() throws {
        var b = book()
        try b.push(key, [0, 1], at: 0)
        #expect(b.due(now: 1).isEmpty)
        let outcome = try b.push(key, [4, 2, 3, 1], at: 2)
        #expect(outcome.duplicates == [1])
        #expect(b.due(now: 2) == [key])
        let (pass, snapshot, _) = b.finish(key, now: 3)!
        #expect(snapshot.complete && snapshot.run == "r" && snapshot.step == 10 && pass.duplicates == [1])
        // Late batches of a written pass are refused, not a new pass.
        #expect(throws: Rejection.self) { try b.push(key, [0], at: 4) }
        #expect(b.open.isEmpty)
    }

    @Test func incompletePassesAreDueAfterTheTimeoutOrWhenSuperseded() throws {
        var b = book()
        try b.push(key, [0, 1], at: 0)
        #expect(b.due(now: 99).isEmpty)
        #expect(b.due(now: 100) == [key])
        let newer = PassKey(run: "r", layer: "layer1", step: 20)
        try b.push(newer, [0], at: 50)
        #expect(b.due(now: 54).isEmpty)          // the newer step started 4 s ago
        #expect(b.due(now: 55) == [key])         // ... 5 s ago: the old pass is superseded
        let otherRun = PassKey(run: "other", layer: "layer1", step: 30)
        try b.push(otherRun, [0], at: 60)
        #expect(!b.due(now: 66).contains(newer)) // another run does not supersede
    }

    @Test func aLayersUnitCountIsFixedByItsFirstBatch() throws {
        var b = book()
        try b.push(key, [0], units: 2, at: 0)
        #expect { try b.push(PassKey(run: "r", layer: "layer1", step: 11), [0], units: 3, at: 1) } throws: {
            ($0 as? Rejection)?.reason == .unitCountChanged
        }
        #expect { try b.push(key, [9], at: 1) } throws: { ($0 as? Rejection)?.reason == .imageIDOutOfRange }
        #expect(b.open[key]!.accumulator.imagesSeen == 1)
    }

    @Test func checkpointsRestoreOpenPassesExactly() throws {
        var b = book()
        try b.push(key, [0, 3], at: 0)
        try b.push(PassKey(run: "r", layer: "layer2", step: 1), [1, 2, 3, 4, 0], at: 1)
        _ = b.finish(PassKey(run: "r", layer: "layer2", step: 1), now: 2)
        let path = NSTemporaryDirectory() + "hndd-checkpoint-\(UUID().uuidString)"
        try Checkpoint.write(b, to: path)
        var restored = book()
        #expect(try Checkpoint.read(path, into: &restored) == 1)
        #expect(restored.open[key]!.accumulator.encodedState() == b.open[key]!.accumulator.encodedState())
        #expect(throws: Rejection.self) { try restored.push(PassKey(run: "r", layer: "layer2", step: 1), [0], at: 3) }
        try restored.push(key, [1, 2, 4], at: 4)
        try b.push(key, [1, 2, 4], at: 4)
        #expect(restored.snapshot(of: restored.open[key]!, now: 5) == b.snapshot(of: b.open[key]!, now: 5))
        // Another dictionary refuses the checkpoint.
        var other = PassBook(index: DictionaryIndex(bookDictionary()), options: .init(quantile: 0.01), passTimeout: 1, supersededAfter: 1)
        #expect(throws: StateError.self) { try Checkpoint.read(path, into: &other) }
    }

    @Test func checkpointsOfSeveralPassesComeBackInOrderAndBadFilesAreNamed() throws {
        var b = book()
        let keys = (1...3).map { PassKey(run: "r", layer: "layer\($0)", step: 1) }
        for (i, k) in keys.enumerated() { try b.push(k, [Int64(i), 4], at: Double(i)) }
        let path = NSTemporaryDirectory() + "hndd-checkpoint-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Checkpoint.write(passes: keys.map { b.open[$0]! }, finished: [], index: b.index, options: b.options, to: path)
        let restored = try #require(try Checkpoint.passes(path, index: b.index, options: b.options))
        #expect(restored.passes.map(\.key) == keys)
        #expect(restored.passes.map { $0.accumulator.encodedState() } == keys.map { b.open[$0]!.accumulator.encodedState() })
        // No file: nothing to resume. A file that is no checkpoint, or a cut one: an error naming it.
        #expect(try Checkpoint.passes(path + ".none", index: b.index, options: b.options) == nil)
        let bytes = try #require(try Checkpoint.fileBytes(path))
        #expect(bytes.count == (try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int))
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: path))
        #expect(throws: StateError.self) { try Checkpoint.passes(path, index: b.index, options: b.options) }
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: StateError.self) { try Checkpoint.passes(path, index: b.index, options: b.options) }
        #expect("\(error)".contains(path) && "\(error)".contains("is not an hndd checkpoint"))
    }
}
