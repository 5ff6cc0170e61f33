import Foundation
import HNDWire
import Logging

/// What `hndd status` counts: batches accepted and refused (by reason), images accepted. The
/// engine thread and each layer worker keep their own; a status adds them up.
struct DaemonCounters {
    var batchesAccepted: UInt64 = 0
    var imagesAccepted: UInt64 = 0
    /// Every reason is listed, zeros included, so a client sees what can be refused.
    var rejected = Dictionary(uniqueKeysWithValues: RejectionReason.allCases.map { ($0, UInt64(0)) })

    /// Counts and logs a refused batch.
    mutating func reject(_ reason: RejectionReason, _ description: String, logger: Logger) {
        rejected[reason, default: 0] += 1
        logger.error("batch rejected (\(reason.rawValue)): \(description)")
    }

    static func + (a: DaemonCounters, b: DaemonCounters) -> DaemonCounters {
        var sum = a
        sum.batchesAccepted += b.batchesAccepted
        sum.imagesAccepted += b.imagesAccepted
        sum.rejected.merge(b.rejected, uniquingKeysWith: +)
        return sum
    }
}

extension PassBook {
    func status(of pass: OpenPass) -> Hndd_PassStatus {
        var s = Hndd_PassStatus()
        s.run = pass.key.run
        s.step = pass.key.step
        s.imagesSeen = Int64(pass.accumulator.imagesSeen)
        s.imagesTotal = Int64(index.imageCount)
        s.complete = pass.accumulator.imagesSeen == index.imageCount
        s.open = true
        s.duplicates = UInt64(pass.duplicates.count)
        s.startedUnix = pass.startedAt
        s.updatedUnix = pass.updatedAt
        s.imagesCheckpointed = Int64(pass.imagesCheckpointed)
        s.imagesExpected = Int64(expectedImages)
        return s
    }
}

extension LayerWorkerState {
    /// The layers of this worker that a status lists: with a shape, a finished pass or an open one.
    var layersKnown: Set<String> {
        Set(book.unitsOfLayer.keys).union(recentlyFinished.keys).union(book.open.keys.map(\.layer))
    }

    /// Whether this worker keeps anything of `layer`: a pass (open or written), a shape, a
    /// baseline, a snapshot. Its batches must then keep coming here.
    func holdsAnything(of layer: String) -> Bool {
        book.shapeOfLayer[layer] != nil || latest[layer] != nil || recentlyFinished[layer] != nil
            || book.finishedCount[layer] != nil || book.open.keys.contains { $0.layer == layer }
            || book.baselines.keys.contains { $0.layer == layer } || book.finished.contains { $0.layer == layer }
    }

    func status(ofLayer name: String) -> Hndd_LayerStatus {
        var layer = Hndd_LayerStatus()
        layer.layer = name
        let open = book.open.values.filter { $0.key.layer == name }.sorted { $0.key.step < $1.key.step }
        if let shape = book.shapeOfLayer[name] {
            layer.units = UInt32(shape.units); layer.height = UInt32(shape.height); layer.width = UInt32(shape.width)
        }
        layer.passes = (recentlyFinished[name] ?? []) + open.map(book.status(of:))
        layer.passesFinished = UInt64(book.finishedCount[name] ?? 0)
        return layer
    }
}

extension Daemon {
    /// The daemon's status, from the states of `workers` (waiting at a `Rendezvous`).
    func status(_ workers: [LayerWorker]) -> Hndd_Status {
        var s = Hndd_Status()
        s.protocolVersion = WireProtocol.version
        s.timeUnix = Date().timeIntervalSince1970
        s.uptimeSeconds = s.timeUnix - startedAt
        let counted = workers.reduce(counters) { $0 + $1.state.counters }
        s.batchesAccepted = counted.batchesAccepted
        s.imagesSeen = counted.imagesAccepted
        s.rejectedBatches = Dictionary(uniqueKeysWithValues: counted.rejected.map { ($0.key.rawValue, $0.value) })
        let depth = queue.depth
        s.queueDepth = UInt64(depth.messages)
        s.queueBytes = UInt64(depth.bytes)
        let denials = access?.denials.byReason ?? Dictionary(uniqueKeysWithValues: AuthDenial.allCases.map { ($0, UInt64(0)) })
        s.authDeniedByReason = Dictionary(uniqueKeysWithValues: denials.map { ($0.key.rawValue, $0.value) })
        s.authDenied = denials.values.reduce(0, +)
        s.endpointSecurity = security.byEndpoint.mapValues(\.rawValue)
        s.credentialWarnings = UInt64(access?.credentialWarnings ?? 0)
        s.shard = configuration.shard?.description ?? ""
        s.dictionaryFingerprint = dictionaryFingerprint
        // Each layer is in one worker's state.
        let layers = workers.flatMap { worker in worker.state.layersKnown.map { ($0, worker) } }
        for (name, worker) in layers.sorted(by: { $0.0 < $1.0 }) {
            s.layers.append(worker.state.status(ofLayer: name))
        }
        return s
    }
}
