import HNDEngine

/// The counts of a snapshot file's rows (`hndd summary`), each with what changed since the
/// previous complete pass — as `subscribe` would have said when the row was published.
public struct RowSummary: Sendable {
    public var row: SnapshotRow
    /// The row's labels and flags (the values the counts do not use keep their defaults).
    public var snapshot: LayerSnapshot
    public var summary: SnapshotSummary
    public var changes: [String]
}

extension SnapshotReader {
    /// The rows of `layers` (every layer when empty), of `run` and `step` when given, in file
    /// order per layer. The previous pass of a row is looked for among all earlier rows of its
    /// layer (of `run`, when given). Throws when the selection is empty.
    public func summaries(layers requested: [String], run: String? = nil, step: Int64? = nil) throws(StoreError) -> [RowSummary] {
        var result: [RowSummary] = []
        var present: [(run: String, step: Int64)] = []
        for name in try resolveLayers(requested) {
            let layer = try self.layer(name)
            var history = PassHistory()
            for row in layer.rows where run == nil || row.run == run {
                present.append((row.run, row.step))
                let snapshot = try self.snapshot(layer, row: row.index, detail: .counted)
                let summary = SnapshotSummary(snapshot, taxonomy: taxonomy)
                let changes = history.record(step: row.step, complete: row.complete, summary: summary)
                if step == nil || row.step == step {
                    result.append(RowSummary(row: row, snapshot: snapshot, summary: summary, changes: changes))
                }
            }
        }
        guard result.isEmpty else { return result }
        let runs = Set(present.map(\.run)).sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        let wanted = [run.map { "of run \"\($0)\"" }, step.map { "at step \($0)" }].compactMap { $0 }.joined(separator: " ")
        throw StoreError(file: path, object: "", message: "no snapshot \(wanted); "
                         + (present.isEmpty ? "runs in this file: \(Set(try allRuns(requested)).sorted().joined(separator: ", "))"
                                            : "steps present: \(LayerRows.describe(steps: present.map(\.step))) (runs \(runs))"))
    }

    private func allRuns(_ requested: [String]) throws(StoreError) -> [String] {
        var runs: [String] = []
        for name in try resolveLayers(requested) { runs += try layer(name).rows.map(\.run) }
        return runs
    }
}
