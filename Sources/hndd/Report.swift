import ArgumentParser
import Foundation
import HNDReport

/// `hndd report`: a snapshot file as one self-contained HTML page (inline SVG and CSS).
struct Report: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the dissection report of a snapshot file as one self-contained HTML page.",
        discussion: """
        Per layer: the latest complete snapshot (or the one of --step): units per local concept split by \
        global bias next to the Network Dissection baseline, units per subgroup, region and concept type, \
        coverage, sorted Stage I probabilities, the training timeline of every complete snapshot, and a \
        table of every unit. With --dictionary (a Face Dictionary with /images/pixels), each featured \
        unit's top-activating probe images. Safe to run while the daemon writes the file.
        """)

    @Argument(help: "Snapshot file (docs/4-snapshots.md).") var snapshots: String
    @Option(help: "HTML file to write.") var out: String
    @Option(name: .customLong("layer"), help: "Layer to report (repeatable; default: every layer in the file).")
    var layers: [String] = []
    @Option(help: "Face Dictionary with /images/pixels, for the top-activating probe images.") var dictionary: String?
    @Option(help: "Training step to show (default: the latest complete snapshot).") var step: Int64?
    @Option(help: "Run to show (default: the run of the latest complete snapshot).") var run: String?
    @Option(help: "Unit whose top-activating images to show (default: a few of the best-localised units).") var unit: Int?

    func validate() throws {
        if let unit, unit < 0 { throw ValidationError("--unit must be a unit index (0 or more), got \(unit)") }
    }

    func execute() async throws {
        let request = ReportRequest(snapshotPath: snapshots, layers: layers, dictionaryPath: dictionary, step: step, unit: unit, run: run)
        let outcome = try HTMLReport.render(request)
        let data = Data(outcome.html.utf8)
        let directory = (out as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw UserError("\(out): cannot write the report: directory \(directory) does not exist")
        }
        do {
            try data.write(to: URL(fileURLWithPath: out), options: .atomic)
        } catch {
            throw UserError("\(out): cannot write the report: \(error.localizedDescription)")
        }
        let shown = outcome.layers.map { layer in
            "\(layer.name) (\(layer.units) units, step \(layer.row.step)\(layer.row.complete ? "" : ", partial"))"
        }
        print("\(out): \(ByteCountFormatter.string(fromByteCount: Int64(data.count), countStyle: .file)); " + shown.joined(separator: ", "))
    }
}
