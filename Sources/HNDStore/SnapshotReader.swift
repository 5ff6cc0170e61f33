import HNDEngine

/// Reads a snapshot file (docs/4-snapshots.md, `SnapshotSchema`) read-only, checking every dataset's type and
/// shape against the schema. The daemon replaces the file atomically on every append, so the one
/// handle opened here sees one consistent version of it throughout.
public final class SnapshotReader {
    public let path: String
    public let taxonomy: SnapshotTaxonomy
    /// Layers that hold at least one row, in file order.
    public let layerNames: [String]
    let file: HDF5File

    public init(path: String) throws(StoreError) {
        self.path = path
        file = try HDF5File.open(path)
        let format = file.hasAttribute("format") ? try file.stringAttribute("format") : nil
        guard let format, format == SnapshotSchema.format else {
            let found = format.map { "its format attribute is \"\($0)\"" } ?? "it has no format attribute"
            throw StoreError(file: path, object: "", message: "not a hndd snapshot file (\(found); expected \"\(SnapshotSchema.format)\")")
        }
        if file.hasAttribute("version") {
            let version: Int64 = try file.numericAttribute("version")
            guard version <= Int64(SnapshotSchema.version) else {
                throw StoreError(file: path, object: "", message: "snapshot file version \(version); this hndd reads version \(SnapshotSchema.version) — update hndd")
            }
        }
        taxonomy = try Self.readTaxonomy(file)
        let layers = SnapshotSchema.layersGroup
        guard file.isGroup(layers) else {
            throw file.error(layers, "the file holds no snapshots yet (no \(layers) group)")
        }
        var names: [String] = []
        for name in try file.members(of: layers) where file.isGroup(SnapshotSchema.group(ofLayer: name)) {
            if try file.shape(of: SnapshotSchema.group(ofLayer: name) + "/step").first ?? 0 > 0 { names.append(name) }
        }
        guard !names.isEmpty else { throw file.error(layers, "the file holds no snapshots yet (no layer has a row)") }
        layerNames = names
    }

    static func readTaxonomy(_ file: HDF5File) throws(StoreError) -> SnapshotTaxonomy {
        let categories = try file.readStrings(SnapshotSchema.categories)
        let subgroups = try file.readStrings(SnapshotSchema.subgroups)
        let regions = try file.readStrings(SnapshotSchema.regions)
        let concepts = try file.readStrings(SnapshotSchema.concepts)
        func indices(_ name: String, count: Int, below limit: Int, of what: String) throws(StoreError) -> [Int32] {
            let (shape, values) = try file.read(name, as: Int32.self)
            guard shape == [count] else { throw file.error(name, "shape \(shape), expected [\(count)]") }
            if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= limit }) {
                throw file.error(name, "entry \(bad) is \(values[bad]), outside the \(limit) \(what)")
            }
            return values
        }
        let subgroupCategory = try indices(SnapshotSchema.subgroupCategory, count: subgroups.count, below: categories.count, of: "categories")
        let conceptRegion = try indices(SnapshotSchema.conceptRegion, count: concepts.count, below: regions.count, of: "regions")
        let conceptType = try indices(SnapshotSchema.conceptType, count: concepts.count, below: FaceDictionary.ConceptType.names.count, of: "concept types")
        return SnapshotTaxonomy(categories: categories, subgroups: subgroups, subgroupCategory: subgroupCategory, regions: regions,
                                concepts: concepts, conceptRegion: conceptRegion, conceptType: conceptType,
                                globalLabel: [], localLabel: [], ellipse: [], maskSize: 0)
    }

    /// The layers asked for (all when `requested` is empty), each checked to exist.
    public func resolveLayers(_ requested: [String]) throws(StoreError) -> [String] {
        if requested.isEmpty { return layerNames }
        var seen = Set<String>(), names: [String] = []
        for name in requested where seen.insert(name).inserted {
            guard layerNames.contains(name) else {
                throw StoreError(file: path, object: "", message: "no layer \"\(name)\" with snapshots; layers in this file: \(layerNames.joined(separator: ", "))")
            }
            names.append(name)
        }
        return names
    }

    /// A layer's units, dimensions and bookkeeping rows, with every dataset checked against the schema.
    public func layer(_ name: String) throws(StoreError) -> LayerRows {
        let group = SnapshotSchema.group(ofLayer: name)
        let t = try file.shape(of: group + "/step").first ?? 0
        let thresholdShape = try file.shape(of: group + "/threshold")
        guard thresholdShape.count == 2, thresholdShape[0] == t else {
            throw file.error(group + "/threshold", "shape \(thresholdShape), expected [\(t), units]")
        }
        var layer = LayerRows(name: name, units: thresholdShape[1], topImageCount: 0, rows: (0..<t).map(SnapshotRow.init))
        var present: [SnapshotDataset] = []
        for dataset in SnapshotSchema.datasets {
            let path = group + "/" + dataset.name
            if dataset.optional && !file.exists(path) { continue }
            try check(dataset, at: path, rows: t, layer: &layer)
            try dataset.io.readColumn?(file, path, &layer.rows)
            present.append(dataset)
        }
        layer.datasets = present
        return layer
    }

    /// The dataset's element type and shape are the schema's; a free axis (k) is taken from the file.
    private func check(_ dataset: SnapshotDataset, at path: String, rows t: Int, layer: inout LayerRows) throws(StoreError) {
        guard try file.typeClass(of: path) == dataset.element.typeClass else {
            throw file.error(path, "holds the wrong kind of values; expected \(dataset.element.rawValue)")
        }
        let shape = try file.shape(of: path)
        if dataset.axes.contains(.topImages), shape.count == dataset.axes.count + 1 { layer.topImageCount = shape.last! }
        let expected = [t] + dataset.axes.map { axis in
            switch axis {
            case .units: layer.units
            case .subgroups: taxonomy.subgroups.count
            case .concepts: taxonomy.concepts.count
            case .topImages: layer.topImageCount
            }
        }
        guard shape == expected else {
            throw file.error(path, "shape \(shape), expected \(expected) \(dataset.shapeDescription)")
        }
    }

    /// Which datasets of a row to read: the counts need only the labels and flags.
    public enum Detail: Sendable { case counted, everything }

    /// One row of a layer as the engine's `LayerSnapshot`, so that its counts come from
    /// `SnapshotSummary`. With `.counted`, the values the counts do not use keep their defaults.
    public func snapshot(_ layer: LayerRows, row: Int, detail: Detail) throws(StoreError) -> LayerSnapshot {
        let r = layer.rows[row]
        var s = LayerSnapshot(layer: layer.name, imagesSeen: Int(r.imagesSeen), imagesTotal: Int(r.imagesTotal),
                              units: layer.units, subgroupCount: taxonomy.subgroups.count,
                              conceptCount: taxonomy.concepts.count, topImageCount: layer.topImageCount)
        s.run = r.run
        s.step = r.step
        s.timeUnix = r.timeUnix
        s.significanceTested = r.complete && layer.datasets.contains { $0.name == SnapshotSchema.significanceFlag }
        let group = SnapshotSchema.group(ofLayer: layer.name)
        for dataset in layer.datasets where detail == .everything || dataset.isCounted || dataset.name == SnapshotSchema.changeP {
            try dataset.io.readRow?(file, group + "/" + dataset.name, row, taxonomy, &s)
        }
        s.changeTested = r.complete && s.globalChangeP.contains { !$0.isNaN }
        return s
    }
}

/// The rows of one layer, without their (large) per-unit values.
public struct LayerRows: Sendable {
    public var name: String
    public var units: Int
    /// k of `top_images`; 0 when the file predates that dataset.
    public var topImageCount: Int
    public var rows: [SnapshotRow]
    /// The schema's datasets this layer's group holds.
    var datasets: [SnapshotDataset] = []

    /// The row a report shows: the latest complete one, or with `step` the latest (preferably
    /// complete) row of that step; of `run` when given. Falls back to the latest row when no row
    /// is complete.
    public func selectRow(step: Int64?, run: String? = nil, path: String) throws(StoreError) -> SnapshotRow {
        var candidates = rows
        if let run {
            candidates = rows.filter { $0.run == run }
            guard !candidates.isEmpty else {
                var runs: [String] = []
                for row in rows where !runs.contains(row.run) { runs.append(row.run) }
                throw StoreError(file: path, object: "", message: "layer \(name): no snapshot of run \"\(run)\"; runs in this file: \(runs.map { "\"\($0)\"" }.joined(separator: ", "))")
            }
        }
        if let step {
            let matching = candidates.filter { $0.step == step }
            guard let chosen = matching.last(where: \.complete) ?? matching.last else {
                throw StoreError(file: path, object: "", message: "layer \(name): no snapshot at step \(step)\(run.map { " of run \"\($0)\"" } ?? ""); steps present: \(Self.describe(steps: candidates.map(\.step)))")
            }
            return chosen
        }
        return candidates.last(where: \.complete) ?? candidates[candidates.count - 1]
    }

    /// The complete rows of one run, one per step (the latest when a step was dissected twice),
    /// in step order: the training timeline.
    public func timelineRows(run: String) -> [SnapshotRow] {
        var latest = [Int64: SnapshotRow]()
        for row in rows where row.complete && row.run == run { latest[row.step] = row }
        return latest.values.sorted { $0.step < $1.step }
    }

    /// "0, 100, 200" or, for many, "0, 100, 200, …, 29,900 (300 distinct steps)".
    public static func describe(steps: [Int64]) -> String {
        let distinct = Array(Set(steps)).sorted()
        if distinct.count <= 12 { return distinct.map(String.init).joined(separator: ", ") }
        let head = distinct.prefix(5).map(String.init), tail = distinct.suffix(3).map(String.init)
        return (head + ["…"] + tail).joined(separator: ", ") + " (\(distinct.count) distinct steps)"
    }
}
