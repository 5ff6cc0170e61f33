import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// The daemon: a receiver thread moves batches from the ingest socket into a queue bounded in
/// bytes; the engine thread (the caller of `run`) hands each to its layer's worker
/// (`LayerWorkers`), answers control requests, publishes the snapshots the workers computed and
/// checkpoints; each worker applies its layers' batches in order, writes their finished passes and
/// computes their snapshots, at the same time as the others (issue 18). Subscribers never slow it:
/// the publish socket drops for a subscriber that does not keep up. `DaemonService` runs it under a
/// swift-service-lifecycle `ServiceGroup`.
///
/// Its state is touched by the engine thread only (the workers' states too, while they wait at a
/// `Rendezvous`); `stop` may be called from any thread.
public final class Daemon: @unchecked Sendable {
    let configuration: DaemonConfiguration
    let logger: Logger
    let dictionary: FaceDictionary
    let taxonomy: Hndd_Taxonomy
    let output: SharedSnapshotFile
    let context: ZMQContext
    let endpoints: Endpoints
    let queue: IngestQueue
    let outbox = EngineOutbox()
    let layerWorkers: LayerWorkers
    let stopRequested = StopFlag()
    let startedAt = Date().timeIntervalSince1970

    let security: TransportSecurity
    /// The CURVE parts, when any endpoint uses CURVE.
    let access: DaemonAccess?
    /// Where an image-shard daemon keeps its finished passes.
    let shardStates: ShardStates?
    /// Identifies the dictionary served, for `hndd merge` (`Checkpoint.dictionaryFingerprint`).
    let dictionaryFingerprint: UInt64

    /// The engine thread's refusals (the workers count theirs).
    var counters = DaemonCounters()
    /// A worker wrote a pass since the last checkpoint: the next turn checkpoints, so that a
    /// restart does not resume it.
    var checkpointOwed = false

    /// How long a turn of the engine thread, or of an idle worker, waits for a batch.
    static let turnSeconds = 0.02
    /// Batches handed to workers in one turn of the engine thread at most, so that control
    /// requests are answered between them even while small messages pour in.
    static let batchesRoutedPerTurn = 64

    public init(_ configuration: DaemonConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        dictionary = try DictionaryFile.load(configuration.dictionaryPath)
        taxonomy = Hndd_Taxonomy(dictionary)
        let emptyBook = PassBook(index: DictionaryIndex(dictionary), options: configuration.options,
                                 passTimeout: configuration.passTimeout, supersededAfter: configuration.supersededAfter,
                                 shard: configuration.shard,
                                 baselineWeights: SharedBaselineWeights(limit: configuration.keptBaselineWeights))
        dictionaryFingerprint = Checkpoint.dictionaryFingerprint(emptyBook.index)
        let defaults = Endpoints(runDirectory: configuration.runDirectory.path)
        endpoints = Endpoints(ingest: resolveEndpoint(configuration.ingest, default: defaults.ingest),
                              publish: resolveEndpoint(configuration.publish, default: defaults.publish),
                              control: resolveEndpoint(configuration.control, default: defaults.control))
        // Refused before anything is made.
        let keys = KeyDirectory(runDirectory: configuration.runDirectory)
        security = try TransportSecurity(endpoints, insecureTCP: configuration.insecureTCP, keys: keys)
        access = security.usesCurve ? try DaemonAccess(keys: keys, logger: logger) : nil
        try configuration.runDirectory.create()
        output = SharedSnapshotFile(try SnapshotFile(path: configuration.snapshotPath, dictionary: dictionary,
                                                     keepPartials: configuration.keepPartials))
        shardStates = configuration.shard.map { _ in ShardStates(runDirectory: configuration.runDirectory, keep: configuration.keptShardPasses) }
        context = try ZMQContext()
        queue = IngestQueue(budgetBytes: Int(configuration.queueBudgetMB * 1_048_576))
        layerWorkers = LayerWorkers(emptyBook: emptyBook, context: WorkerContext(
            logger: logger, taxonomy: taxonomy, output: output, shardStates: shardStates, queue: queue, outbox: outbox,
            decoder: BatchDecoder(maximumValueCount: Int(configuration.maxMessageBytes / 2)), snapshotInterval: configuration.snapshotInterval))
    }

    /// Asks the daemon to stop: it stops receiving, its workers apply what they and its queue
    /// hold, write what is owed, and it checkpoints and returns from `run`.
    public func stop() { stopRequested.set() }

    /// Serves until `stop`; blocks the calling thread, which becomes the engine thread.
    public func run() throws {
        let lock = try configuration.runDirectory.lock()
        defer { close(lock) }
        try resumeFromCheckpoint()
        // Loading and indexing the dictionary (and reading a checkpoint) freed their temporaries
        // into the heaps of the threads that made them, where they would stay resident all along.
        ProcessHeap.trim()
        for warning in security.warnings { logger.warning("\(warning)") }
        var sockets = try DaemonSockets(endpoints, security: security, serverKey: access?.serverKeys.pair.secretKey,
                                        context: context, maxMessageBytes: configuration.maxMessageBytes)
        let guardian = try access?.startGuard(context: context, monitorEndpoints: sockets.monitorEndpoints)
        defer { guardian?.stop() }
        try sockets.bind()
        try configuration.runDirectory.writeEndpoints(sockets.bound)
        logger.info("serving", metadata: ["ingest": "\(sockets.bound.ingest)", "publish": "\(sockets.bound.publish)",
                                           "control": "\(sockets.bound.control)", "snapshots": "\(configuration.snapshotPath)",
                                           "images": "\(dictionary.imageCount)", "security": "\(security.summary)",
                                           "shard": "\(configuration.shard.map(\.description) ?? "every image")",
                                           "kernels": "\(EngineKernels.path)"])
        let receiver = IngestReceiver(socket: sockets.ingest, queue: queue, logger: logger)
        receiver.start()
        var loop = EngineLoop()
        while !stopRequested.isSet { serveOnce(&loop, sockets: sockets) }

        receiver.cancelAndWait()
        while let message = queue.pop(timeout: 0) { route(message, security: sockets.security.ingest) }
        layerWorkers.stop { publishOutbox(on: sockets.publish) }
        publishOutbox(on: sockets.publish)
        checkpoint(publishingOn: nil)
        logger.info("stopped", metadata: ["open_passes": "\(layerWorkers.all.reduce(0) { $0 + $1.state.book.open.count })"])
    }

    /// What the engine thread keeps from one turn of its loop to the next.
    struct EngineLoop {
        var lastCheckpoint = Date().timeIntervalSince1970
    }

    /// One turn: subscribers' comings and goings, control requests, the batches waiting handed
    /// to their workers, the workers' snapshots published, a checkpoint when one is due or wanted.
    func serveOnce(_ loop: inout EngineLoop, sockets: DaemonSockets) {
        dropRevokedSubscribers(sockets)
        do { try sockets.publish.processPendingCommands() } catch { logger.error("publish: \(error)") }
        serveControl(sockets)
        var wait = Self.turnSeconds
        for _ in 0..<Self.batchesRoutedPerTurn {
            guard let message = queue.pop(timeout: wait) else { break }
            route(message, security: sockets.security.ingest)
            wait = 0
        }
        publishOutbox(on: sockets.publish)
        let now = Date().timeIntervalSince1970
        if now - loop.lastCheckpoint >= configuration.checkpointInterval {
            checkpoint(publishingOn: sockets.publish)
            loop.lastCheckpoint = now
        } else if checkpointOwed {
            checkpoint(publishingOn: sockets.publish)
        }
    }
}
