import Foundation
import HNDStore
import Logging
import Testing
@testable import HNDDaemon
@testable import HNDEngine
@testable import HNDWire

/// The layer workers with their threads: each layer's batches applied in arrival order, a
/// control request's view taken only once every earlier batch of every layer is applied, a
/// checkpoint's at the next batch boundary, and a stop that applies and writes what is queued.
@Suite struct LayerWorkersTests {
    /// Workers over the five-image dictionary of `PassBookTests`, their snapshot file in a fresh
    /// directory, and the queue whose budget their batches count against.
    struct Rig {
        let workers: LayerWorkers
        let queue = IngestQueue(budgetBytes: 1 << 20)
        let outbox = EngineOutbox()
        let output: SharedSnapshotFile

        init(workerCount: Int = LayerRouter.maximumWorkers, keptBaselineWeights: Int = DaemonConfiguration.Defaults.keptBaselineWeights,
             builds: HeldBuilds? = nil) throws {
            let dictionary = bookDictionary()
            let directory = NSTemporaryDirectory() + "hndd-workers-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            output = SharedSnapshotFile(try SnapshotFile(path: directory + "/snapshots.h5", dictionary: dictionary))
            let book = PassBook(index: DictionaryIndex(dictionary), options: .init(), passTimeout: 100, supersededAfter: 5,
                                baselineWeights: SharedBaselineWeights(limit: keptBaselineWeights))
            var context = WorkerContext(
                logger: Logger(label: "test"), taxonomy: Hndd_Taxonomy(dictionary), output: output, shardStates: nil,
                queue: queue, outbox: outbox, decoder: BatchDecoder(), snapshotInterval: 3600)
            if let builds { context.runInBackground = builds.hold }
            workers = LayerWorkers(emptyBook: book, context: context, workerCount: workerCount)
        }

        /// As the engine thread does: through the queue, then to the layer's worker.
        func route(_ batch: Batch) throws {
            queue.push(try batch.message())
            workers.route(try BatchDecoder().check(queue.pop(timeout: 0)!))
        }

        /// Keeps every worker of `layers` busy for a while, so that what is routed next waits.
        func occupy(_ layers: [String]) {
            for layer in layers { workers.worker(for: layer).inbox.push(.task { _ in Thread.sleep(forTimeInterval: 0.2) }) }
        }
    }

    /// A batch of 2 units of 2×2 maps whose values depend on the batch (`salt`), so that an image
    /// sent twice counts with the values of whichever batch came first.
    struct Batch {
        var run = "r"
        var step: Int64 = 1
        let layer: String
        let ids: [Int64]
        let salt: Int
        var key: PassKey { PassKey(run: run, layer: layer, step: step) }
        var values: [Float] { ids.flatMap { id in (0..<8).map { Float(id) + Float($0) * 0.1 + Float(salt) * 0.37 } } }

        func message() throws -> ZMQMultipart {
            let frames = try BatchEncoder.encode(run: run, layer: layer, step: step, imageIDs: ids, units: 2, height: 2, width: 2,
                                                 values: values)
            return ZMQMultipart(frames: try frames.map { try ZMQMessage(copying: $0) })
        }
    }

    /// The workers' background builds of baselines' weights, held until the test runs them.
    final class HeldBuilds: @unchecked Sendable {
        private let lock = NSLock()
        private var held: [@Sendable () -> Void] = []

        var count: Int { lock.lock(); defer { lock.unlock() }; return held.count }

        @Sendable func hold(_ build: @escaping @Sendable () -> Void) {
            lock.lock(); held.append(build); lock.unlock()
        }

        /// Runs the held builds here, then lets every worker of `rig` take their results (a worker
        /// takes them in the turn after an item: the second wait is behind that turn).
        func release(in rig: Rig) {
            lock.lock(); let builds = held; held = []; lock.unlock()
            for build in builds { build() }
            rig.workers.afterQueuedWork { _ in }
            rig.workers.afterQueuedWork { _ in }
        }
    }

    /// Interleaved batches of `layers`, overlapping ids among 0...3 (a pass never completes: the
    /// dictionary has 5 images).
    func interleaved(_ layers: [String], rounds: Int = 6) -> [Batch] {
        (0..<rounds).flatMap { i in
            layers.enumerated().map { l, layer in Batch(layer: layer, ids: [Int64((i + l) % 4), Int64((i + l + 1) % 4)], salt: i) }
        }
    }

    func imagesSeen(_ workers: [LayerWorker]) -> [Int] {
        workers.map { $0.state.book.open.values.reduce(0) { $0 + $1.accumulator.imagesSeen } }
    }

    @Test func eachLayersBatchesAreAppliedInTheOrderTheyArrived() throws {
        let rig = try Rig()
        let batches = interleaved(["a", "b", "c"])
        for batch in batches { try rig.route(batch) }
        // The same batches applied one after another by one book, as before the workers.
        var serial = rig.workers.emptyBook
        for batch in batches {
            try batch.values.withUnsafeBufferPointer { v in
                _ = try serial.ingest(batch.key, imageIDs: batch.ids, units: 2, height: 2, width: 2, values: v, now: 0)
            }
        }
        let states = rig.workers.afterQueuedWork { workers in
            workers.map { worker in worker.state.book.open.mapValues { $0.accumulator.encodedState() } }
        }
        #expect(states.count == 3)
        for (layer, worker) in rig.workers.router.workerOfLayer {
            let key = PassKey(run: "r", layer: layer, step: 1)
            #expect(states[worker].keys.map(\.layer) == [layer])
            #expect(states[worker][key] == serial.open[key]!.accumulator.encodedState())
        }
        // And in another order the state differs: the test can tell.
        var reversed = rig.workers.emptyBook
        for batch in batches.reversed() where batch.layer == "a" {
            try batch.values.withUnsafeBufferPointer { v in
                _ = try reversed.ingest(batch.key, imageIDs: batch.ids, units: 2, height: 2, width: 2, values: v, now: 0)
            }
        }
        let a = PassKey(run: "r", layer: "a", step: 1)
        #expect(reversed.open[a]!.accumulator.encodedState() != serial.open[a]!.accumulator.encodedState())
        rig.workers.stop {}
    }

    @Test func aControlRequestSeesEveryEarlierBatchOfEveryLayer() throws {
        let rig = try Rig()
        rig.occupy(["a", "b", "c"])
        for batch in interleaved(["a", "b", "c"]) { try rig.route(batch) }
        let (seen, accepted) = rig.workers.afterQueuedWork { workers in
            (imagesSeen(workers), workers.map(\.state.counters.batchesAccepted))
        }
        #expect(seen == [4, 4, 4])
        #expect(accepted == [6, 6, 6])
        let depth = rig.queue.depth
        #expect(depth.messages == 0 && depth.bytes == 0) // each batch left the budget when taken in hand
        rig.workers.stop {}
    }

    @Test func aRequestOfSomeWorkersDoesNotWaitForTheOthers() throws {
        let rig = try Rig()
        for batch in interleaved(["a", "b"]) { try rig.route(batch) }
        let a = rig.workers.owner(of: "a")!, b = rig.workers.owner(of: "b")!
        #expect(rig.workers.afterQueuedWork { $0.map(\.state.counters.batchesAccepted) } == [6, 6])
        // "b"'s worker is held (for two seconds at most), its next batch queued behind the hold.
        let gate = DispatchSemaphore(value: 0)
        b.inbox.push(.task { _ in _ = gate.wait(timeout: .now() + 2) })
        try rig.route(Batch(layer: "b", ids: [0], salt: 9))
        try rig.route(Batch(layer: "a", ids: [1], salt: 9))
        let (accepted, waiting) = rig.workers.afterQueuedWork(of: [a]) { workers in
            (workers.map(\.state.counters.batchesAccepted), rig.queue.depth.messages)
        }
        #expect(accepted == [7])
        #expect(waiting == 1) // "b"'s batch: its worker was not waited for
        gate.signal()
        #expect(rig.workers.afterQueuedWork { $0.map(\.state.counters.batchesAccepted) } == [7, 7])
        rig.workers.stop {}
    }

    @Test func aCheckpointWaitsForTheBatchInHandOnly() throws {
        let rig = try Rig()
        rig.occupy(["a", "b"])
        for batch in interleaved(["a", "b"]) { try rig.route(batch) }
        // Behind the sleep, in front of every batch.
        let (seen, waiting) = rig.workers.atNextBoundary { workers in (imagesSeen(workers), rig.queue.depth.messages) }
        #expect(seen == [0, 0])
        #expect(waiting == 12)
        #expect(rig.workers.afterQueuedWork(imagesSeen) == [4, 4])
        rig.workers.stop {}
    }

    @Test func theirBooksMakeOneCheckpoint() throws {
        let rig = try Rig()
        for batch in interleaved(["a", "b"]) { try rig.route(batch) }
        let path = NSTemporaryDirectory() + "hndd-checkpoint-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let states = try rig.workers.afterQueuedWork { workers in
            try Checkpoint.write(workers.map(\.state.book), index: rig.workers.emptyBook.index,
                                 options: rig.workers.emptyBook.options, to: path)
            return workers.map { $0.state.book.open.mapValues { $0.accumulator.encodedState() } }
        }
        var restored = rig.workers.emptyBook
        #expect(try Checkpoint.read(path, into: &restored) == 2)
        for state in states {
            for (key, bytes) in state { #expect(restored.open[key]!.accumulator.encodedState() == bytes) }
        }
        rig.workers.stop {}
    }

    @Test func aStopAppliesWhatIsQueuedAndWritesTheCompletePasses() throws {
        let rig = try Rig(workerCount: 1)
        rig.occupy(["a"])
        let batches = [Batch(layer: "a", ids: [0, 1], salt: 0), Batch(layer: "b", ids: [0], salt: 0),
                       Batch(layer: "a", ids: [2, 3], salt: 1), Batch(layer: "a", ids: [4], salt: 2)]
        for batch in batches { try rig.route(batch) }
        #expect(rig.workers.all.count == 1) // "b" shares the one worker
        rig.workers.stop {}
        let worker = rig.workers.all[0]
        let a = PassKey(run: "r", layer: "a", step: 1), b = PassKey(run: "r", layer: "b", step: 1)
        #expect(worker.state.book.finished == [a])
        #expect(worker.state.book.open[b]!.accumulator.imagesSeen == 1)
        #expect(try rig.output.writtenPasses().map { "\($0.layer)/\($0.run)/\($0.step)" } == ["a/r/1"])
        #expect(worker.state.latest["a"]!.complete)
        let taken = rig.outbox.take()
        #expect(taken.checkpointWanted)
        #expect(taken.publications.count >= 1 && taken.publications.allSatisfy { $0.count == 2 })
    }

    @Test func anEvictedBaselinesWeightsAreRebuiltWhileItsLayersBatchesGoOn() throws {
        let builds = HeldBuilds()
        let rig = try Rig(keptBaselineWeights: 1, builds: builds)
        let a = RunLayer(run: "a", layer: "l"), b = RunLayer(run: "b", layer: "l")
        // Runs a and b each record a baseline; room for one run-layer's weights: b's evict a's.
        for run in ["a", "b"] {
            try rig.route(Batch(run: run, step: 0, layer: "l", ids: [0, 1, 2, 3, 4], salt: 0))
            rig.workers.afterQueuedWork { _ in }
            #expect(builds.count == 1)
            builds.release(in: rig)
        }
        let worker = rig.workers.owner(of: "l")!
        #expect(Set(worker.state.book.baselineWeights.now.kept.keys) == [b])
        // A new pass of a: its weights are wanted, and its batches are applied while they build.
        let pass = PassKey(run: "a", layer: "l", step: 1)
        for ids in [[0, 1], [2, 3]] as [[Int64]] { try rig.route(Batch(run: "a", step: 1, layer: "l", ids: ids, salt: 0)) }
        let (seen, hasBaseline, hasWeights) = rig.workers.afterQueuedWork { _ in
            let accumulator = worker.state.book.open[pass]!.accumulator
            return (accumulator.imagesSeen, accumulator.baselineMaxima != nil, accumulator.baselineWeights != nil)
        }
        #expect(seen == 4 && hasBaseline && !hasWeights)
        #expect(builds.count == 1)
        builds.release(in: rig)
        #expect(rig.workers.afterQueuedWork { _ in worker.state.book.open[pass]!.accumulator.baselineWeights != nil })
        #expect(Set(worker.state.book.baselineWeights.now.kept.keys) == [a])
        // The same maxima as the baseline: the rebuilt weights test nothing as changed.
        try rig.route(Batch(run: "a", step: 1, layer: "l", ids: [4], salt: 0))
        rig.workers.stop {}
        let latest = try #require(worker.state.latest["l"])
        #expect(latest.complete && latest.run == "a" && latest.step == 1)
        #expect(!latest.globalChangeP.isEmpty && latest.globalChangeP.allSatisfy { $0 == 1 })
    }

    @Test func aLayerWhoseBatchesWereAllRefusedIsForgotten() throws {
        let rig = try Rig()
        try rig.route(Batch(layer: "a", ids: [0], salt: 0))
        // Image 99 is not in the five-image dictionary: refused, and nothing of the layer kept.
        try rig.route(Batch(layer: "bogus", ids: [99], salt: 0))
        try rig.route(Batch(layer: "bogus", ids: [99], salt: 1))
        try rig.route(Batch(layer: "a", ids: [99], salt: 0)) // refused too, but "a" has a pass
        rig.workers.afterQueuedWork { _ in }
        #expect(rig.workers.router.workerOfLayer == ["a": 0, "bogus": 1])
        let forgettable = rig.outbox.take().forgettable
        #expect(forgettable.map(\.layer) == ["bogus", "bogus"] && forgettable.map(\.refusedBatch) == [2, 3])
        for (layer, number) in forgettable { rig.workers.forget(layer, refusedBatch: number) }
        #expect(rig.workers.router.workerOfLayer == ["a": 0])
        #expect(rig.workers.owner(of: "bogus") == nil)
        // Its worker takes the next new layer.
        try rig.route(Batch(layer: "b", ids: [1], salt: 0))
        #expect(rig.workers.router.workerOfLayer == ["a": 0, "b": 1])
        #expect(rig.workers.afterQueuedWork(imagesSeen) == [1, 1])
        rig.workers.stop {}
    }
}
