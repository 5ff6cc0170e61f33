import ArgumentParser
import Foundation
import HNDDaemon
import HNDEngine
import HNDWire

/// `hndd subscribe --layer L`: a live view of one layer's dissection, or JSON Lines.
struct Subscribe: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch one layer's running dissection: a live terminal view, or JSON Lines with --json.")

    @Option(help: "Layer to watch (the trainer's module name).") var layer: String
    @OptionGroup var location: DaemonLocation
    @Option(help: "Publish endpoint, instead of the run directory's.") var endpoint: String?
    @Option(name: .customLong("control-endpoint"), help: "Control endpoint, for the current state when joining.")
    var controlEndpoint: String?
    @Option(help: "Cluster file: subscribe to the daemon that serves the layer.") var cluster: String?
    @Flag(help: "Print one JSON object per snapshot (JSON Lines).") var json = false
    @Flag(help: "Exit after the first snapshot.") var once = false
    @Option(help: "With --once: seconds to wait for a snapshot before failing.") var timeout: Double = 30

    /// The daemon to watch: its publish and control endpoints and the credential for them.
    func daemon() throws -> (publish: String, control: String, credential: ClientCredential?) {
        guard let cluster else {
            let endpoints = location.endpoints
            return (endpoint ?? endpoints.publish, controlEndpoint ?? endpoints.control, try location.credential())
        }
        let file = try ClusterFile(cluster)
        let serving = try file.daemons(serving: layer)
        guard serving.count == 1 else {
            throw UserError("\(cluster): layer \(layer) is split by image over \(serving.map(\.name).joined(separator: ", ")); each daemon "
                            + "sees only its share: `hndd merge --cluster \(cluster) --layer \(layer) …` makes the pass's snapshot")
        }
        return (serving[0].endpoints.publish, serving[0].endpoints.control, try file.credential(of: serving[0]))
    }

    func execute() async throws {
        let daemon = try daemon()
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .sub)
        try socket.setLinger(milliseconds: 0)
        try socket.setReceiveTimeout(milliseconds: 200)
        if let credential = daemon.credential { try socket.setCurveClient(server: credential.serverKey, pair: credential.pair) }
        try socket.subscribe(PublishTopic.topic(forLayer: layer))
        try socket.connect(daemon.publish)
        var view = SubscriberView(json: json)

        // A late subscriber first gets the current state.
        var request = Hndd_ControlRequest()
        var snapshotRequest = Hndd_SnapshotRequest()
        snapshotRequest.layer = layer
        request.snapshot = snapshotRequest
        if let reply = try? ControlClient(endpoint: daemon.control, credential: daemon.credential).request(request, timeout: 2),
           case .snapshot(let current) = reply.reply {
            view.show(current)
            if once { return }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let message = try socket.receive(maxFrames: 3) {
                do {
                    view.show(try SnapshotPublication.decode(message))
                    if once { return }
                } catch {
                    FileHandle.standardError.write(Data("hndd: skipped a malformed publication: \(error)\n".utf8))
                }
            } else if once, Date() > deadline {
                throw DaemonError("no snapshot of layer \(layer) within \(timeout) s")
            }
        }
    }
}

/// Renders snapshots of one layer: JSON Lines, or a screen redrawn in place.
struct SubscriberView {
    let json: Bool
    var shown: (run: String, step: Int64, seen: Int64, complete: Bool)?
    var history = PassHistory()

    init(json: Bool) { self.json = json }

    mutating func show(_ m: Hndd_Snapshot) {
        let key = (m.run, m.step, m.imagesSeen, m.complete)
        if let shown, shown == key { return }
        shown = key
        let snapshot = LayerSnapshot(m)
        let summary = SnapshotSummary(snapshot, taxonomy: m.taxonomy)
        let changes = history.record(step: m.step, complete: m.complete, summary: summary)
        if json {
            print(SummaryJSON.line(snapshot, complete: m.complete, summary: summary, changes: changes,
                                   duplicates: m.duplicatesReported.count))
        } else {
            print(screen(m, summary, changes: changes), terminator: "")
        }
        fflush(nil) // all output streams: the view is watched live
    }

    func screen(_ m: Hndd_Snapshot, _ s: SnapshotSummary, changes: [String]) -> String {
        let width = 40
        let share = m.imagesTotal > 0 ? Double(m.imagesSeen) / Double(m.imagesTotal) : 0
        let filled = Int((share * Double(width)).rounded(.down))
        var lines: [String] = []
        lines.append("hndd — layer \(m.layer)   run \(m.run)   step \(m.step)   \(m.complete ? "pass complete" : "pass in progress")")
        lines.append("[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "] "
                     + "\(m.imagesSeen)/\(m.imagesTotal) images")
        lines.append("")
        lines.append("interpretable units  HND \(s.interpretable)/\(s.units)   Network Dissection \(s.netdissect)/\(s.units)   "
                     + "localised \(s.localised)   biased \(s.biased)")
        lines.append("units per region     " + s.unitsPerRegion.map { "\($0.name) \($0.units)" }.joined(separator: "  "))
        lines.append("units per type       " + s.typeUnits.map { "\($0.name) \($0.units)" }.joined(separator: "  "))
        lines.append("top concepts         " + (s.conceptUnits.isEmpty ? "—" : s.conceptUnits.prefix(8).map { "\($0.name) \($0.units)" }.joined(separator: "  ")))
        lines.append("biased per subgroup  " + s.subgroupUnits.filter { $0.units > 0 }.map { "\($0.name) \($0.units)" }.joined(separator: "  "))
        if let b = s.beyondUntrained {
            lines.append("beyond untrained     \(b.units) units   " + b.categoryUnits.filter { $0.units > 0 }.map { "\($0.name) \($0.units)" }.joined(separator: "  "))
        }
        if !m.duplicatesReported.isEmpty { lines.append("repeated image ids   \(m.duplicatesReported.count) (counted once)") }
        lines.append("")
        if let previous = history.previous(ofStep: m.step) {
            lines.append("since step \(previous.step):")
            lines += changes.map { "  " + $0 }
        } else {
            lines.append("since the previous pass: (no earlier complete pass yet)")
        }
        // Home, clear to end of screen: the view redraws in place.
        return "\u{1B}[H\u{1B}[J" + lines.joined(separator: "\n") + "\n"
    }
}
