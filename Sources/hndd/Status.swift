import ArgumentParser
import Foundation
import HNDDaemon
import HNDWire

/// `hndd status`: the daemon's state as JSON on stdout.
struct Status: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's status as JSON: layers, passes, images seen, rejected batches, queue depth, uptime.")
    @OptionGroup var location: DaemonLocation
    @Option(help: "Control endpoint, instead of the run directory's.") var endpoint: String?
    @Option(help: "Seconds to wait for the daemon.") var timeout: Double = 5

    func execute() async throws {
        var request = Hndd_ControlRequest()
        request.status = Hndd_StatusRequest()
        let reply = try ControlClient(endpoint: endpoint ?? location.endpoints.control).request(request, timeout: timeout)
        let data = try JSONSerialization.data(withJSONObject: Self.json(reply.status), options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    /// Plain JSON numbers (protobuf's JSON mapping would quote 64-bit integers) and every field.
    static func json(_ s: Hndd_Status) -> [String: Any] {
        [
            "uptime_seconds": s.uptimeSeconds,
            "time_unix": s.timeUnix,
            "batches_accepted": s.batchesAccepted,
            "images_seen": s.imagesSeen,
            "rejected_batches": s.rejectedBatches,
            "rejected_total": s.rejectedBatches.values.reduce(0, +),
            "queue_depth": s.queueDepth,
            "queue_bytes": s.queueBytes,
            "layers": s.layers.map { layer -> [String: Any] in
                [
                    "layer": layer.layer, "units": layer.units, "height": layer.height, "width": layer.width,
                    "passes_finished": layer.passesFinished,
                    "passes": layer.passes.map { p -> [String: Any] in
                        ["run": p.run, "step": p.step, "images_seen": p.imagesSeen, "images_total": p.imagesTotal,
                         "images_checkpointed": p.imagesCheckpointed, "complete": p.complete, "open": p.open,
                         "duplicates": p.duplicates, "started_unix": p.startedUnix, "updated_unix": p.updatedUnix]
                    },
                ]
            },
        ]
    }
}
