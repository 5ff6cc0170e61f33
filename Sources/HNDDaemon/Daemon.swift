import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// Settings of `hndd serve` (SPEC §5).
public struct DaemonConfiguration: Sendable {
    public var dictionaryPath: String
    public var runDirectory: RunDirectory
    public var snapshotPath: String
    public var ingest: String?
    public var publish: String?
    public var control: String?
    public var snapshotInterval: Double = 1
    public var checkpointInterval: Double = 30
    public var passTimeout: Double = 600
    public var maxMessageMB: Double = 512
    /// Received batches waiting for the engine, at most this many bytes; past it the daemon
    /// stops reading and ZeroMQ's high-water marks push back on the trainers.
    /// Small on purpose: trainers queue on their side (the client), and every batch waiting here
    /// delays the complete snapshot — 64 MiB is two to three paper-scale batches.
    public var queueBudgetMB: Double = 64
    public var options = DissectionOptions()

    public init(dictionaryPath: String, runDirectory: RunDirectory, snapshotPath: String? = nil) {
        self.dictionaryPath = dictionaryPath
        self.runDirectory = runDirectory
        self.snapshotPath = snapshotPath ?? runDirectory.defaultSnapshotFile
    }
}

/// The daemon: a receiver thread moves batches from the ingest socket into a queue bounded in
/// bytes; the engine thread (the caller of `run`) applies them to their passes, answers control
/// requests, publishes snapshots and writes finished passes. Subscribers never slow it: the
/// publish socket drops for a subscriber that does not keep up.
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

    // Counters for `status`.
    var batchesAccepted: UInt64 = 0
    var imagesAccepted: UInt64 = 0
    var rejected: [String: UInt64] = [:]
    var controlRejected: UInt64 = 0
    /// The last snapshot published per layer, for late subscribers.
    var latest: [String: Hndd_Snapshot] = [:]
    var recentlyFinished: [String: [Hndd_PassStatus]] = [:]

    public init(_ configuration: DaemonConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        dictionary = try DictionaryFile.load(configuration.dictionaryPath)
        taxonomy = Hndd_Taxonomy(dictionary)
        let index = DictionaryIndex(dictionary)
        book = PassBook(index: index, options: configuration.options, passTimeout: configuration.passTimeout,
                        supersededAfter: min(configuration.passTimeout, max(10, 5 * configuration.snapshotInterval)))
        try configuration.runDirectory.create()
        output = try SnapshotFile(path: configuration.snapshotPath, dictionary: dictionary)
        let run = configuration.runDirectory
        let defaults = Endpoints(runDirectory: run.path)
        endpoints = Endpoints(ingest: resolveEndpoint(configuration.ingest, default: defaults.ingest),
                              publish: resolveEndpoint(configuration.publish, default: defaults.publish),
                              control: resolveEndpoint(configuration.control, default: defaults.control))
        context = try ZMQContext()
        queue = IngestQueue(budgetBytes: Int(configuration.queueBudgetMB * 1_048_576))
        for reason in BatchRejection.allReasons { rejected[reason] = 0 }
        for reason in ["unit_count_changed", "map_size_changed", "image_id_out_of_range", "non_finite",
                       "pass_finished", "empty_shape"] { rejected[reason] = 0 }
    }

    /// Asks the daemon to stop: it finishes the batch in hand, drains its queue, writes what is
    /// owed and returns from `run`.
    public func stop() { stopRequested.set() }

    public func run() throws {
        let lock = try configuration.runDirectory.lock()
        defer { close(lock) }
        try resumeFromCheckpoint()

        let maxBytes = Int64(configuration.maxMessageMB * 1_048_576)
        let ingest = try ZMQSocket(context, type: .pull)
        try ingest.setMaxMessageSize(bytes: maxBytes)
        // A few messages per connection in ZeroMQ's buffers; the real bound is the byte-sized queue.
        try ingest.setReceiveHighWaterMark(4)
        try ingest.setReceiveTimeout(milliseconds: 100)
        try ingest.setLinger(milliseconds: 0)
        try ingest.bind(endpoints.ingest)
        let publish = try ZMQSocket(context, type: .pub)
        try publish.setSendHighWaterMark(64)
        try publish.setLinger(milliseconds: 0)
        try publish.bind(endpoints.publish)
        let control = try ZMQSocket(context, type: .router)
        try control.setMaxMessageSize(bytes: 1 << 20)
        try control.setLinger(milliseconds: 0)
        try control.bind(endpoints.control)
        let bound = Endpoints(ingest: try ingest.lastEndpoint, publish: try publish.lastEndpoint, control: try control.lastEndpoint)
        try configuration.runDirectory.writeEndpoints(bound)
        logger.info("serving", metadata: ["ingest": "\(bound.ingest)", "publish": "\(bound.publish)",
                                           "control": "\(bound.control)", "snapshots": "\(configuration.snapshotPath)",
                                           "images": "\(dictionary.imageCount)", "kernels": "\(EngineKernels.path)"])

        // The ingest socket moves to the receiver thread for good; no other thread touches it.
        let handOff = HandOff(ingest)
        let receiver = Thread { [queue, stopRequested, logger] in
            Self.receive(from: handOff.value, into: queue, until: stopRequested, logger: logger)
        }
        receiver.name = "hndd-ingest"
        receiver.start()

        var values: [Float] = []
        let decoder = BatchDecoder(maximumValueCount: Int(maxBytes / 2))
        var lastCheckpoint = Date().timeIntervalSince1970
        var lastPublish = 0.0
        var snapshotCost = 0.0
        while true {
            let stopping = stopRequested.isSet
            serveControl(control)
            if let message = queue.pop(timeout: stopping ? 0 : 0.02) {
                ingestBatch(message, decoder: decoder, values: &values)
            } else if stopping && queue.isDrained {
                break
            }
            let now = Date().timeIntervalSince1970
            writeDuePasses(now: now, publish: publish)
            // Partial snapshots: at the configured interval, but never more than a fifth of the
            // time goes to them when they are expensive, and not while batches wait — then the
            // pass is moving faster than a snapshot could show, and its complete snapshot comes
            // sooner without them — unless the last one is ten intervals old; and none of a pass
            // about to complete (within the interval, or four snapshot costs).
            let sincePublish = now - lastPublish
            let due = sincePublish >= max(configuration.snapshotInterval, 4 * snapshotCost)
            let stale = sincePublish >= max(10 * configuration.snapshotInterval, 4 * snapshotCost)
            if due && (queue.isDrained || stale) {
                let started = Date().timeIntervalSince1970
                if publishPartials(now: now, publish: publish,
                                   unlessCompleteWithin: max(configuration.snapshotInterval, 4 * snapshotCost)) {
                    snapshotCost = Date().timeIntervalSince1970 - started
                    lastPublish = Date().timeIntervalSince1970
                }
            }
            if now - lastCheckpoint >= configuration.checkpointInterval {
                checkpoint()
                lastCheckpoint = now
            }
        }
        receiver.cancel()
        while !queue.receiverFinished { Thread.sleep(forTimeInterval: 0.01) }
        writeDuePasses(now: Date().timeIntervalSince1970, publish: publish)
        checkpoint()
        logger.info("stopped", metadata: ["open_passes": "\(book.open.count)"])
    }

    // MARK: Ingest

    static func receive(from socket: ZMQSocket, into queue: IngestQueue, until stop: StopFlag, logger: Logger) {
        defer { queue.markReceiverFinished() }
        while !stop.isSet {
            guard queue.waitForRoom(timeout: 0.1) else { continue }
            do {
                if let message = try socket.receive(maxFrames: 3) { queue.push(message) }
            } catch {
                if stop.isSet { return }
                logger.error("ingest socket: \(error)")
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    func ingestBatch(_ message: ZMQMultipart, decoder: BatchDecoder, values: inout [Float]) {
        let result: Result<(PassKey, BatchOutcome), Rejection>
        do {
            result = try decoder.withDecoded(message, scratch: &values) { batch, v in
                let key = PassKey(run: batch.run, layer: batch.layer, step: batch.step)
                return Result { () throws(Rejection) in
                    (key, try book.ingest(key, imageIDs: batch.imageIDs, units: batch.units, height: batch.height,
                                          width: batch.width, values: v, now: Date().timeIntervalSince1970))
                }
            }
        } catch {
            reject(error.reason, "\(error)")
            return
        }
        switch result {
        case let .success((key, outcome)):
            batchesAccepted += 1
            imagesAccepted += UInt64(outcome.accepted)
            if !outcome.duplicates.isEmpty {
                logger.warning("repeated image ids counted once", metadata: ["pass": "\(key)", "ids": "\(outcome.duplicates.prefix(10))"])
            }
        case let .failure(error):
            reject(error.reason, error.description)
        }
    }

    func reject(_ reason: String, _ description: String) {
        rejected[reason, default: 0] += 1
        logger.error("batch rejected (\(reason)): \(description)")
    }

    // MARK: Snapshots

    func writeDuePasses(now: Double, publish: ZMQSocket) {
        let due = book.due(now: now)
        guard !due.isEmpty else { return }
        var rows: [LayerSnapshot] = []
        for key in due {
            let started = Date().timeIntervalSince1970
            guard let (pass, snapshot) = book.finish(key, now: now) else { continue }
            publishSnapshot(snapshot, duplicates: pass.duplicates, on: publish)
            let published = Date().timeIntervalSince1970
            rows.append(snapshot)
            var status = passStatus(pass)
            status.open = false
            status.imagesCheckpointed = status.imagesSeen // written to the snapshot file
            recentlyFinished[key.layer, default: []].append(status)
            if recentlyFinished[key.layer]!.count > 8 { recentlyFinished[key.layer]!.removeFirst() }
            logger.info(snapshot.complete ? "pass complete" : "pass written incomplete",
                        metadata: ["pass": "\(key)", "images": "\(snapshot.imagesSeen)/\(snapshot.imagesTotal)",
                                   "interpretable": "\(snapshot.interpretableUnits)/\(snapshot.units)",
                                   "snapshot_s": "\(String(format: "%.3f", published - started))"])
        }
        do {
            try output.append(rows)
        } catch {
            logger.critical("cannot append to the snapshot file: \(error)")
        }
        // A finished pass must not be resumed by a restart.
        checkpoint()
    }

    /// Publishes a partial snapshot of each open pass with new images, except of those expected
    /// to complete within `soon` seconds: that snapshot would only delay the complete one.
    /// Returns whether it published any.
    func publishPartials(now: Double, publish: ZMQSocket, unlessCompleteWithin soon: Double) -> Bool {
        var published = false
        for key in Array(book.open.keys) {
            guard let pass = book.open[key], pass.imagesPublished != pass.accumulator.imagesSeen else { continue }
            if let left = pass.expectedSecondsToComplete, left < soon { continue }
            published = true
            publishSnapshot(book.snapshot(of: pass, now: now), duplicates: pass.duplicates, on: publish)
            book.update(key) { $0.imagesPublished = pass.accumulator.imagesSeen }
        }
        return published
    }

    func publishSnapshot(_ snapshot: LayerSnapshot, duplicates: [Int64], on publish: ZMQSocket) {
        let message = Hndd_Snapshot(snapshot, taxonomy: taxonomy, duplicates: duplicates)
        latest[snapshot.layer] = message
        do {
            // Never blocks: a subscriber that cannot keep up loses snapshots, not the daemon time.
            _ = try publish.send(try SnapshotPublication.encode(message), dontWait: true)
        } catch {
            logger.error("publish: \(error)")
        }
    }

    // MARK: Checkpoints

    func checkpoint() {
        do {
            try Checkpoint.write(book, to: configuration.runDirectory.checkpointFile)
            for key in book.open.keys { book.update(key) { $0.imagesCheckpointed = $0.accumulator.imagesSeen } }
        } catch {
            logger.error("checkpoint: \(error)")
        }
    }

    func resumeFromCheckpoint() throws {
        let path = configuration.runDirectory.checkpointFile
        let resumed = try Checkpoint.read(path, into: &book)
        // A pass written just before a crash, with the checkpoint not yet updated, is not resumed.
        for (layer, run, step) in try output.writtenPasses() {
            book.dropWritten(PassKey(run: run, layer: layer, step: step))
        }
        if resumed > 0 { logger.info("resumed open passes from checkpoint", metadata: ["passes": "\(resumed)"]) }
    }

    // MARK: Control

    func serveControl(_ socket: ZMQSocket) {
        while true {
            let message: ZMQMultipart?
            do { message = try socket.receive(maxFrames: 4, dontWait: true) } catch { return }
            guard let message else { return }
            // ROUTER frames: [identity, payload] from DEALER, [identity, "", payload] from REQ.
            guard message.frameCount == 2 || (message.frameCount == 3 && message.frames[1].count == 0) else {
                controlRejected += 1
                continue
            }
            let identity = message.frames[0].bytes
            let envelope: [[UInt8]] = message.frameCount == 3 ? [identity, []] : [identity]
            var reply = Hndd_ControlReply()
            reply.protocolVersion = WireProtocol.version
            do {
                let request = try WireCodec.deserialize(Hndd_ControlRequest.self, from: message.frames[message.frameCount - 1])
                reply.requestID = request.requestID
                answer(request, into: &reply)
            } catch {
                controlRejected += 1
                reply.error.message = "\(error)"
            }
            if let bytes = try? WireCodec.serialize(reply) {
                _ = try? socket.send(envelope + [bytes], dontWait: true)
            }
        }
    }

    func answer(_ request: Hndd_ControlRequest, into reply: inout Hndd_ControlReply) {
        switch request.request {
        case .status:
            reply.status = status()
        case .snapshot(let snapshotRequest):
            if let current = currentSnapshot(layer: snapshotRequest.layer) {
                reply.snapshot = current
            } else {
                let known = Set(book.unitsOfLayer.keys).union(latest.keys).sorted()
                reply.error.message = "no snapshot of layer \(snapshotRequest.layer) yet (layers: \(known.joined(separator: ", ")))"
            }
        case .flush:
            let now = Date().timeIntervalSince1970
            for key in Array(book.open.keys) {
                if let pass = book.open[key] { latest[key.layer] = Hndd_Snapshot(book.snapshot(of: pass, now: now), taxonomy: taxonomy, duplicates: pass.duplicates) }
            }
            checkpoint()
            reply.ack.message = "checkpoint written; \(book.open.count) open passes"
        case nil:
            reply.error.message = "empty control request"
        }
    }

    /// The latest state of a layer: the most recently updated open pass, else the last published.
    func currentSnapshot(layer: String) -> Hndd_Snapshot? {
        if let pass = book.open.values.filter({ $0.key.layer == layer }).max(by: { $0.updatedAt < $1.updatedAt }) {
            if let published = latest[layer], published.run == pass.key.run, published.step == pass.key.step,
               published.imagesSeen == Int64(pass.accumulator.imagesSeen) {
                return published
            }
            let message = Hndd_Snapshot(book.snapshot(of: pass, now: Date().timeIntervalSince1970), taxonomy: taxonomy, duplicates: pass.duplicates)
            latest[layer] = message
            return message
        }
        return latest[layer]
    }

    func passStatus(_ pass: OpenPass) -> Hndd_PassStatus {
        var s = Hndd_PassStatus()
        s.run = pass.key.run
        s.step = pass.key.step
        s.imagesSeen = Int64(pass.accumulator.imagesSeen)
        s.imagesTotal = Int64(dictionary.imageCount)
        s.complete = pass.accumulator.imagesSeen == dictionary.imageCount
        s.open = true
        s.duplicates = UInt64(pass.duplicates.count)
        s.startedUnix = pass.startedAt
        s.updatedUnix = pass.updatedAt
        s.imagesCheckpointed = Int64(pass.imagesCheckpointed)
        return s
    }

    func status() -> Hndd_Status {
        var s = Hndd_Status()
        s.protocolVersion = WireProtocol.version
        s.timeUnix = Date().timeIntervalSince1970
        s.uptimeSeconds = s.timeUnix - startedAt
        s.batchesAccepted = batchesAccepted
        s.imagesSeen = imagesAccepted
        s.rejectedBatches = rejected
        s.rejectedBatches["control_malformed"] = controlRejected
        let depth = queue.depth
        s.queueDepth = UInt64(depth.messages)
        s.queueBytes = UInt64(depth.bytes)
        let layers = Set(book.unitsOfLayer.keys).union(recentlyFinished.keys).union(book.open.keys.map(\.layer))
        for name in layers.sorted() {
            var layer = Hndd_LayerStatus()
            layer.layer = name
            let open = book.open.values.filter { $0.key.layer == name }.sorted { $0.key.step < $1.key.step }
            if let shape = book.shapeOfLayer[name] {
                layer.units = UInt32(shape.units); layer.height = UInt32(shape.height); layer.width = UInt32(shape.width)
            }
            layer.passes = (recentlyFinished[name] ?? []) + open.map(passStatus)
            layer.passesFinished = UInt64(book.finishedCount[name] ?? 0)
            s.layers.append(layer)
        }
        return s
    }
}

/// Received batches waiting for the engine, bounded in bytes.
final class IngestQueue: @unchecked Sendable {
    private let condition = NSCondition()
    /// Popped slots are cleared at once, so processed batches free their memory immediately.
    private var messages: [ZMQMultipart?] = []
    private var head = 0
    private var bytes = 0
    private var finished = false
    let budgetBytes: Int

    init(budgetBytes: Int) { self.budgetBytes = budgetBytes }

    var depth: (messages: Int, bytes: Int) {
        condition.lock(); defer { condition.unlock() }
        return (messages.count - head, bytes)
    }
    var isDrained: Bool { depth.messages == 0 }
    var receiverFinished: Bool { condition.lock(); defer { condition.unlock() }; return finished }

    func markReceiverFinished() { condition.lock(); finished = true; condition.broadcast(); condition.unlock() }

    /// Waits until the queue is under its budget (one message may overshoot it).
    func waitForRoom(timeout: Double) -> Bool {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while bytes >= budgetBytes {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    func push(_ message: ZMQMultipart) {
        condition.lock()
        messages.append(message)
        bytes += message.byteCount
        condition.broadcast()
        condition.unlock()
    }

    func pop(timeout: Double) -> ZMQMultipart? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while head == messages.count {
            if timeout <= 0 || !condition.wait(until: deadline) { return nil }
        }
        let message = messages[head]!
        messages[head] = nil
        head += 1
        bytes -= message.byteCount
        if head > 64, head * 2 > messages.count { messages.removeFirst(head); head = 0 }
        condition.broadcast()
        return message
    }
}

/// Moves a value to another thread that becomes its only user.
struct HandOff<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Set once, read from any thread.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
