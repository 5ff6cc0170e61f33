import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// The daemon: a receiver thread moves batches from the ingest socket into a queue bounded in
/// bytes; the engine thread (the caller of `run`) applies them to their passes, answers control
/// requests, publishes snapshots and writes finished passes. Subscribers never slow it: the
/// publish socket drops for a subscriber that does not keep up. `DaemonService` runs it under a
/// swift-service-lifecycle `ServiceGroup`.
///
/// Its state is touched by the engine thread only; `stop` may be called from any thread.
public final class Daemon: @unchecked Sendable {
    let configuration: DaemonConfiguration
    let logger: Logger
    let dictionary: FaceDictionary
    let taxonomy: Hndd_Taxonomy
    var book: PassBook
    let output: SnapshotFile
    let context: ZMQContext
    let endpoints: Endpoints
    let queue: IngestQueue
    let stopRequested = StopFlag()
    let startedAt = Date().timeIntervalSince1970

    let security: TransportSecurity
    /// The CURVE parts, when any endpoint uses CURVE.
    let access: DaemonAccess?
    /// Where an image-shard daemon keeps its finished passes.
    let shardStates: ShardStates?
    /// Identifies the dictionary served, for `hndd merge` (`Checkpoint.dictionaryFingerprint`).
    let dictionaryFingerprint: UInt64

    var counters = DaemonCounters()
    var schedule: SnapshotSchedule
    /// The last snapshot published per layer, for late subscribers.
    var latest: [String: Hndd_Snapshot] = [:]
    var recentlyFinished: [String: [Hndd_PassStatus]] = [:]

    public init(_ configuration: DaemonConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        dictionary = try DictionaryFile.load(configuration.dictionaryPath)
        taxonomy = Hndd_Taxonomy(dictionary)
        book = PassBook(index: DictionaryIndex(dictionary), options: configuration.options,
                        passTimeout: configuration.passTimeout, supersededAfter: configuration.supersededAfter,
                        shard: configuration.shard, keptBaselineWeights: configuration.keptBaselineWeights)
        dictionaryFingerprint = Checkpoint.dictionaryFingerprint(book.index)
        let defaults = Endpoints(runDirectory: configuration.runDirectory.path)
        endpoints = Endpoints(ingest: resolveEndpoint(configuration.ingest, default: defaults.ingest),
                              publish: resolveEndpoint(configuration.publish, default: defaults.publish),
                              control: resolveEndpoint(configuration.control, default: defaults.control))
        // Refused before anything is made.
        let keys = KeyDirectory(runDirectory: configuration.runDirectory)
        security = try TransportSecurity(endpoints, insecureTCP: configuration.insecureTCP, keys: keys)
        access = security.usesCurve ? try DaemonAccess(keys: keys, logger: logger) : nil
        try configuration.runDirectory.create()
        output = try SnapshotFile(path: configuration.snapshotPath, dictionary: dictionary, keepPartials: configuration.keepPartials)
        shardStates = configuration.shard.map { _ in ShardStates(runDirectory: configuration.runDirectory, keep: configuration.keptShardPasses) }
        context = try ZMQContext()
        queue = IngestQueue(budgetBytes: Int(configuration.queueBudgetMB * 1_048_576))
        schedule = SnapshotSchedule(interval: configuration.snapshotInterval)
    }

    /// Asks the daemon to stop: it finishes the batch in hand, stops receiving, applies what
    /// its queue holds, writes what is owed, checkpoints and returns from `run`.
    public func stop() { stopRequested.set() }

    /// Serves until `stop`; blocks the calling thread, which becomes the engine thread.
    public func run() throws {
        let lock = try configuration.runDirectory.lock()
        defer { close(lock) }
        try resumeFromCheckpoint()
        // Loading and indexing the dictionary (and reading a checkpoint) freed their temporaries
        // into the heaps of the threads that made them, where they would stay resident all along.
        ProcessHeap.trim()
        let maxBytes = Int64(configuration.maxMessageMB * 1_048_576)
        for warning in security.warnings { logger.warning("\(warning)") }
        var sockets = try DaemonSockets(endpoints, security: security, serverKey: access?.serverKeys.pair.secretKey,
                                        context: context, maxMessageBytes: maxBytes)
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
        var loop = EngineLoop(decoder: BatchDecoder(maximumValueCount: Int(maxBytes / 2)))
        while !stopRequested.isSet { serveOnce(&loop, sockets: sockets) }

        receiver.cancelAndWait()
        while let message = queue.pop(timeout: 0) {
            guard admits(message, security: sockets.security.ingest, what: "batch") else { continue }
            ingestBatch(message, loop: &loop)
            writeDuePasses(now: Date().timeIntervalSince1970, publish: sockets.publish)
        }
        writeDuePasses(now: Date().timeIntervalSince1970, publish: sockets.publish)
        checkpoint()
        logger.info("stopped", metadata: ["open_passes": "\(book.open.count)"])
    }

    /// What the engine thread keeps from one turn of its loop to the next.
    struct EngineLoop {
        let decoder: BatchDecoder
        /// Scratch for decoded values that are not float32 on the wire.
        var values: [Float] = []
        var lastCheckpoint = Date().timeIntervalSince1970
    }

    /// One turn: control requests, at most one batch, due passes, partial snapshots, checkpoint.
    func serveOnce(_ loop: inout EngineLoop, sockets: DaemonSockets) {
        dropRevokedSubscribers(sockets)
        serveControl(sockets.control, security: sockets.security.control)
        if let message = queue.pop(timeout: 0.02), admits(message, security: sockets.security.ingest, what: "batch") {
            ingestBatch(message, loop: &loop)
        }
        let now = Date().timeIntervalSince1970
        writeDuePasses(now: now, publish: sockets.publish)
        if schedule.isRoundDue(now: now, batchesWaiting: !queue.isDrained) {
            let started = Date().timeIntervalSince1970
            let published = publishPartials(now: now, publish: sockets.publish)
            schedule.recordRound(started: started, ended: Date().timeIntervalSince1970, published: published)
        }
        if now - loop.lastCheckpoint >= configuration.checkpointInterval {
            checkpoint()
            loop.lastCheckpoint = now
        }
    }
}
