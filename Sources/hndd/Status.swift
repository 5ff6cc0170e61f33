import ArgumentParser
import Foundation
import HNDDaemon
import HNDWire

/// `hndd status`: the daemon's state as JSON on stdout; with --cluster, every daemon's.
struct Status: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's status as JSON: layers, passes, images seen, rejected batches, refused peers, queue, uptime.",
        discussion: """
        With --cluster FILE: one JSON object {"cluster": FILE, "daemons": {NAME: status, …}}; a daemon that cannot be \
        reached gets {"error": "…"} and the exit status is 1.
        """)
    @OptionGroup var location: DaemonLocation
    @Option(help: "Control endpoint, instead of the run directory's.") var endpoint: String?
    @Option(help: "Cluster file: the status of each of its daemons.") var cluster: String?
    @Option(help: "Seconds to wait for the daemon.") var timeout: Double = 5

    func execute() async throws {
        var request = Hndd_ControlRequest()
        request.status = Hndd_StatusRequest()
        guard let cluster else {
            let client = ControlClient(endpoint: endpoint ?? location.endpoints.control, credential: try location.credential())
            print(Self.text(Self.json(try client.request(request, timeout: timeout).status)))
            return
        }
        let file = try ClusterFile(cluster)
        var daemons: [String: Any] = [:], unreachable: [String] = []
        for daemon in file.daemons {
            do {
                let client = ControlClient(endpoint: daemon.endpoints.control, credential: try file.credential(of: daemon))
                daemons[daemon.name] = Self.json(try client.request(request, timeout: timeout).status)
            } catch {
                daemons[daemon.name] = ["error": "\(error)"]
                unreachable.append(daemon.name)
            }
        }
        print(Self.text(["cluster": cluster, "daemons": daemons]))
        guard unreachable.isEmpty else { throw UserError("\(cluster): cannot reach \(unreachable.joined(separator: ", "))") }
    }

    static func text(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
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
            "auth_denied": s.authDenied,
            "auth_denied_by_reason": s.authDeniedByReason,
            "endpoint_security": s.endpointSecurity,
            "credential_warnings": s.credentialWarnings,
            "shard": s.shard.isEmpty ? NSNull() : s.shard,
            "dictionary_fingerprint": String(format: "%016llx", s.dictionaryFingerprint),
            "queue_depth": s.queueDepth,
            "queue_bytes": s.queueBytes,
            "layers": s.layers.map { layer -> [String: Any] in
                [
                    "layer": layer.layer, "units": layer.units, "height": layer.height, "width": layer.width,
                    "passes_finished": layer.passesFinished,
                    "passes": layer.passes.map { p -> [String: Any] in
                        ["run": p.run, "step": p.step, "images_seen": p.imagesSeen, "images_total": p.imagesTotal,
                         "images_expected": p.imagesExpected, "images_checkpointed": p.imagesCheckpointed,
                         "complete": p.complete, "open": p.open, "duplicates": p.duplicates,
                         "started_unix": p.startedUnix, "updated_unix": p.updatedUnix]
                    },
                ]
            },
        ]
    }
}
