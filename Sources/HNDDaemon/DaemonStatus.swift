import Foundation
import HNDWire

/// What `hndd status` counts: batches accepted and refused (by reason), images accepted.
struct DaemonCounters {
    var batchesAccepted: UInt64 = 0
    var imagesAccepted: UInt64 = 0
    /// Every reason is listed, zeros included, so a client sees what can be refused.
    var rejected = Dictionary(uniqueKeysWithValues: RejectionReason.allCases.map { ($0, UInt64(0)) })
}

extension Daemon {
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
        s.imagesExpected = Int64(book.expectedImages)
        return s
    }

    func status() -> Hndd_Status {
        var s = Hndd_Status()
        s.protocolVersion = WireProtocol.version
        s.timeUnix = Date().timeIntervalSince1970
        s.uptimeSeconds = s.timeUnix - startedAt
        s.batchesAccepted = counters.batchesAccepted
        s.imagesSeen = counters.imagesAccepted
        s.rejectedBatches = Dictionary(uniqueKeysWithValues: counters.rejected.map { ($0.key.rawValue, $0.value) })
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
