import Foundation
import HNDEngine
import HNDStore

/// What `hndd report` was asked for.
public struct ReportRequest: Sendable {
    public var snapshotPath: String
    /// Empty: every layer with snapshots.
    public var layers: [String]
    /// A Face Dictionary with `/images/pixels`, for the top-activating image strips.
    public var dictionaryPath: String?
    /// Show the snapshot of this training step instead of the latest complete one.
    public var step: Int64?
    /// Show this unit's top-activating images instead of a few chosen ones.
    public var unit: Int?
    /// Show this run (its latest complete snapshot, or its `step`) instead of the latest row's.
    public var run: String?

    public init(snapshotPath: String, layers: [String] = [], dictionaryPath: String? = nil, step: Int64? = nil, unit: Int? = nil,
                run: String? = nil) {
        self.run = run
        self.snapshotPath = snapshotPath
        self.layers = layers
        self.dictionaryPath = dictionaryPath
        self.step = step
        self.unit = unit
    }
}

/// One layer's material: the row shown, its counts, and the counts of every complete row of its run.
struct LayerMaterial {
    var rows: LayerRows
    var shown: SnapshotRow
    var snapshot: LayerSnapshot
    var summary: SnapshotSummary
    var timeline: [TimelinePoint]
}

/// One complete pass of the timeline and its counts.
struct TimelinePoint {
    var row: SnapshotRow
    var summary: SnapshotSummary
}

/// The whole report: one self-contained HTML page (inline SVG and CSS, no network).
public enum HTMLReport {
    /// A rendered page and, per layer, the row it shows.
    public struct Outcome {
        public var html: String
        public var layers: [(name: String, units: Int, row: SnapshotRow)]
    }

    /// Reads the files, checks the request (layers, step, unit) before any rendering, and renders.
    public static func render(_ request: ReportRequest, now: Date = Date()) throws -> Outcome {
        let reader = try SnapshotReader(path: request.snapshotPath)
        let names = try reader.resolveLayers(request.layers)
        var plans: [(rows: LayerRows, shown: SnapshotRow)] = []
        for name in names {
            let rows = try reader.layer(name)
            let shown = try rows.selectRow(step: request.step, run: request.run, path: reader.path)
            if let unit = request.unit, unit < 0 || unit >= rows.units {
                throw ReportError("--unit \(unit): layer \(name) has \(rows.units) units (0–\(rows.units - 1))")
            }
            plans.append((rows, shown))
        }
        let images = try request.dictionaryPath.map { try ProbeImages(path: $0, taxonomy: reader.taxonomy) }
        var materials: [LayerMaterial] = []
        for plan in plans {
            let snapshot = try reader.snapshot(plan.rows, row: plan.shown.index, detail: .everything)
            let timeline = try plan.rows.timelineRows(run: plan.shown.run).map { row in
                TimelinePoint(row: row, summary: SnapshotSummary(try reader.snapshot(plan.rows, row: row.index, detail: .counted),
                                                                 taxonomy: reader.taxonomy))
            }
            materials.append(LayerMaterial(rows: plan.rows, shown: plan.shown, snapshot: snapshot,
                                           summary: SnapshotSummary(snapshot, taxonomy: reader.taxonomy), timeline: timeline))
        }
        var page = Page(path: reader.path, taxonomy: reader.taxonomy, images: images, requestedUnit: request.unit)
        let html = try page.render(materials, now: now)
        return Outcome(html: html, layers: materials.map { ($0.rows.name, $0.rows.units, $0.shown) })
    }
}
