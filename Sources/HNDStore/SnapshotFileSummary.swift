import HNDEngine

/// The counts of a snapshot file's rows (`hndd summary`), each with what changed since the
/// previous complete pass — as `subscribe` would have said when the row was published.
public struct RowSummary: Sendable {
    public var row: SnapshotRow
    /// The row's bookkeeping and labels (region, Network Dissection concept); its other arrays
    /// are emptied once counted, so that a file of thousands of rows is summarised in little memory.
    public var snapshot: LayerSnapshot
    public var summary: SnapshotSummary
    public var changes: [String]
}

extension SnapshotReader {
    /// The rows of `layers` (every layer when empty), of `run` and `step` when given, in file
    /// order per layer. The previous pass of a row is looked for among all earlier rows of its
    /// layer (of `run`, when given). Throws when the selection is empty, naming what there is.
    public func summaries(layers requested: [String], run: String? = nil, step: Int64? = nil) throws(StoreError) -> [RowSummary] {
        var result: [RowSummary] = []
        var runs = Set<String>(), steps: [Int64] = []
        for name in try resolveLayers(requested) {
            let layer = try self.layer(name)
            var history = PassHistory()
            for row in layer.rows {
                runs.insert(row.run)
                guard run == nil || row.run == run else { continue }
                steps.append(row.step)
                var snapshot = try self.snapshot(layer, row: row.index, detail: .counted)
                let summary = SnapshotSummary(snapshot, taxonomy: taxonomy)
                snapshot.dropValuesBesideLabels()
                let changes = history.record(step: row.step, complete: row.complete, summary: summary)
                if step == nil || row.step == step {
                    result.append(RowSummary(row: row, snapshot: snapshot, summary: summary, changes: changes))
                }
            }
        }
        guard result.isEmpty else { return result }
        let wanted = [run.map { "of run \"\($0)\"" }, step.map { "at step \($0)" }].compactMap { $0 }.joined(separator: " ")
        let present = steps.isEmpty
            ? "runs in this file: " + runs.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
            : "steps present: " + LayerRows.describe(steps: steps)
        throw StoreError(file: path, object: "", message: "no snapshot \(wanted); \(present)")
    }
}

extension LayerSnapshot {
    /// Empties every per-unit array but the labels (what a summary line prints of a row).
    mutating func dropValuesBesideLabels() {
        threshold = []; globalProb = []; globalBiased = []; iou = []; localProb = []; localPaired = []; topImages = []
    }
}
