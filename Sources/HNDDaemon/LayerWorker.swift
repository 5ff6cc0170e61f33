import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// What every layer worker shares: set once, or safe to use from any thread.
struct WorkerContext: Sendable {
    let logger: Logger
    let taxonomy: Hndd_Taxonomy
    let output: SharedSnapshotFile
    /// Where an image-shard daemon keeps its finished passes.
    let shardStates: ShardStates?
    /// Whose budget a batch leaves once its worker takes it in hand.
    let queue: IngestQueue
    let outbox: EngineOutbox
    let decoder: BatchDecoder
    let snapshotInterval: Double
    /// Where baselines' weights are built, off the workers' threads (tests hold the builds back).
    var runInBackground: @Sendable (@escaping @Sendable () -> Void) -> Void = { DispatchQueue.global().async(execute: $0) }
}

/// The state of one layer worker: its layers' share of the passes, and what it publishes.
struct LayerWorkerState {
    /// The passes of this worker's layers (every pass of a layer is in its worker's book).
    var book: PassBook
    /// When this worker publishes partial snapshots of its open passes.
    var schedule: SnapshotSchedule
    /// The last snapshot published per layer, for late subscribers.
    var latest: [String: Hndd_Snapshot] = [:]
    var recentlyFinished: [String: [Hndd_PassStatus]] = [:]
    var counters = DaemonCounters()
}

/// One thread applying the batches of its layers (`LayerRouter`) in the order they arrived,
/// writing their due passes and computing their snapshots, while other workers do the same for
/// other layers. It touches no socket: its publications go back through the engine thread
/// (`EngineOutbox`).
///
/// `state` is touched by the worker's thread only, except while the worker waits at a
/// `Rendezvous` or has ended: then by the engine thread alone.
final class LayerWorker: @unchecked Sendable {
    let id: Int
    let context: WorkerContext
    let inbox = WorkerInbox()
    var state: LayerWorkerState
    /// Scratch for decoded values that are not float32 on the wire (apart from `state`: a batch
    /// is decoded into it while `state.book` takes the batch).
    var values: [Float] = []
    /// The baselines' weights being built for this worker's run-layers (its thread's alone).
    var baselineWeightsBuilds: [RunLayer: BaselineWeightsBuild] = [:]

    init(id: Int, book: PassBook, context: WorkerContext) {
        self.id = id
        self.context = context
        state = LayerWorkerState(book: book, schedule: SnapshotSchedule(interval: context.snapshotInterval))
    }

    /// Starts the thread; `running` is left when it ends.
    func start(_ running: DispatchGroup) {
        running.enter()
        let thread = Thread { [self] in
            serve()
            running.leave()
        }
        thread.name = "hndd-layers-\(id)"
        thread.stackSize = DaemonService.engineThreadStackBytes
        thread.start()
    }

    /// One item a turn, then the passes due and the partial snapshots, as the engine thread did
    /// for every layer before; until `.stop`.
    private func serve() {
        while true {
            switch inbox.pop(timeout: Daemon.turnSeconds) {
            case .batch(let batch)?:
                // In hand now, no longer waiting: as the engine thread's one batch in hand before,
                // each worker's is outside the queue's budget.
                context.queue.release(byteCount: batch.byteCount)
                ingestBatch(batch)
            case .task(let task)?:
                task(self)
            case .stop?:
                writeDuePasses(now: Date().timeIntervalSince1970)
                return
            case nil:
                break
            }
            // A batch may have opened a pass wanting weights, a task restored baselines.
            startBaselineWeightsBuilds()
            attachBuiltBaselineWeights()
            let now = Date().timeIntervalSince1970
            writeDuePasses(now: now)
            if state.schedule.isRoundDue(now: now, batchesWaiting: !inbox.isEmpty) {
                let started = Date().timeIntervalSince1970
                let published = publishPartials(now: now)
                state.schedule.recordRound(started: started, ended: Date().timeIntervalSince1970, published: published)
            }
        }
    }
}
