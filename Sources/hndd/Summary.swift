import ArgumentParser
import Foundation
import HNDEngine
import HNDStore

/// `hndd summary S.h5`: the counts of a snapshot file's rows, as `subscribe` shows them live.
struct Summary: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the counts of a snapshot file's rows: one line per (layer, row); JSON Lines with --json.",
        discussion: """
        With --json, each line has the keys of `subscribe --json` (duplicates_reported is null: the file does not \
        record it). Safe to run while the daemon writes the file.
        """)

    @Argument(help: "Snapshot file (docs/4-snapshots.md).") var snapshots: String
    @Option(name: .customLong("layer"), help: "Layer to summarise (repeatable; default: every layer in the file).")
    var layers: [String] = []
    @Option(name: .customLong("run"), help: "Only the rows of this run.") var runName: String?
    @Option(help: "Only the rows of this training step.") var step: Int64?
    @Flag(help: "Print one JSON object per row (JSON Lines).") var json = false

    func execute() async throws {
        let reader = try SnapshotReader(path: snapshots)
        for item in try reader.summaries(layers: layers, run: runName, step: step) {
            if json {
                print(SummaryJSON.line(item.snapshot, complete: item.row.complete, summary: item.summary,
                                       changes: item.changes, duplicates: nil))
            } else {
                print(Self.text(item))
            }
        }
    }

    static func text(_ item: RowSummary) -> String {
        let r = item.row, s = item.summary
        return "\(item.snapshot.layer) run \(r.run) step \(r.step): \(r.imagesSeen)/\(r.imagesTotal) images"
            + (r.complete ? "" : " (partial)")
            + "; interpretable \(s.interpretable), biased \(s.biased), paired \(s.paired), localised \(s.localised), "
            + "Network Dissection \(s.netdissect) of \(s.units) units"
            + (s.significant.map { "; significant: interpretable \($0.interpretable), biased \($0.biased), paired \($0.paired)" }
               ?? "; significance skipped")
            + (s.beyondUntrained.map { "; biased beyond the untrained network \($0.units)" } ?? "")
    }
}
