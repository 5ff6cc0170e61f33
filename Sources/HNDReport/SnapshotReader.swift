import Foundation
import HNDEngine
import HNDStore

/// A snapshot file that cannot be reported on, said in words the user can act on.
public struct ReportError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The concept taxonomy a snapshot file carries in its `/global` and `/local` groups (SPEC §4).
public struct SnapshotTaxonomy: Sendable, Equatable {
    public var categories: [String]
    public var subgroups: [String]
    /// Index into `categories`, one per subgroup.
    public var subgroupCategory: [Int]
    public var regions: [String]
    public var concepts: [String]
    /// Index into `regions`, one per concept.
    public var conceptRegion: [Int]
    /// 0 part, 1 attribute, 2 action unit.
    public var conceptType: [Int32]

    public static let typeNames = ["part", "attribute", "action unit"]

    /// Subgroup indices of each category, in dictionary order.
    public var subgroupsOfCategory: [[Int]] {
        var members = [[Int]](repeating: [], count: categories.count)
        for (s, g) in subgroupCategory.enumerated() { members[g].append(s) }
        return members
    }

    /// Stage I's cut (SPEC §3): biased toward s iff P_s ≥ 1/S_g + 0.05, as `StageRules.isBiased`.
    public func biasThreshold(category g: Int) -> Double {
        1 / Double(max(subgroupsOfCategory[g].count, 1)) + 0.05
    }

    public func summary(of snapshot: LayerSnapshot) -> SnapshotSummary {
        SnapshotSummary(snapshot, regions: regions, concepts: concepts, conceptType: conceptType, subgroups: subgroups)
    }
}

/// Per-row bookkeeping of one layer: which pass each row belongs to and whether it is complete.
public struct SnapshotRow: Sendable, Equatable {
    public var index: Int
    public var run: String
    public var step: Int64
    public var imagesSeen: Int64
    public var imagesTotal: Int64
    public var complete: Bool
    public var timeUnix: Double
}

/// Reads a snapshot file (SPEC §4) read-only. The daemon replaces the file atomically on every
/// append, so the one handle opened here sees one consistent version of it throughout.
public final class SnapshotReader {
    public let path: String
    public let taxonomy: SnapshotTaxonomy
    /// Layers that hold at least one row, in file order.
    public let layerNames: [String]
    let file: HDF5File

    public init(path: String) throws {
        self.path = path
        file = try HDF5File.open(path)
        let format = file.hasAttribute("format") ? try file.stringAttribute("format") : nil
        guard let format, format == SnapshotFile.format else {
            let found = format.map { "its format attribute is \"\($0)\"" } ?? "it has no format attribute"
            throw ReportError("\(path): not a hndd snapshot file (\(found); expected \"\(SnapshotFile.format)\")")
        }
        if file.hasAttribute("version") {
            let version: Int64 = try file.numericAttribute("version")
            guard version <= Int64(SnapshotFile.version) else {
                throw ReportError("\(path): snapshot file version \(version); this hndd reads version \(SnapshotFile.version) — update hndd")
            }
        }
        taxonomy = try Self.readTaxonomy(file, path: path)
        guard file.isGroup("/layers") else {
            throw ReportError("\(path): /layers: the file holds no snapshots yet (no /layers group)")
        }
        var names: [String] = []
        for name in try file.members(of: "/layers") where file.isGroup("/layers/\(name)") {
            if try file.shape(of: "/layers/\(name)/step").first ?? 0 > 0 { names.append(name) }
        }
        guard !names.isEmpty else {
            throw ReportError("\(path): /layers: the file holds no snapshots yet (no layer has a row)")
        }
        layerNames = names
    }

    static func readTaxonomy(_ file: HDF5File, path: String) throws -> SnapshotTaxonomy {
        let categories = try file.readStrings("/global/categories")
        let subgroups = try file.readStrings("/global/subgroups")
        let regions = try file.readStrings("/local/regions")
        let concepts = try file.readStrings("/local/concepts")
        func indices(_ name: String, count: Int, below limit: Int, of what: String) throws -> [Int] {
            let (shape, values) = try file.read(name, as: Int32.self)
            guard shape == [count] else { throw ReportError("\(path): \(name): shape \(shape), expected [\(count)]") }
            if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= limit }) {
                throw ReportError("\(path): \(name): entry \(bad) is \(values[bad]), outside the \(limit) \(what)")
            }
            return values.map(Int.init)
        }
        let subgroupCategory = try indices("/global/subgroup_category", count: subgroups.count, below: categories.count, of: "categories")
        let conceptRegion = try indices("/local/concept_region", count: concepts.count, below: regions.count, of: "regions")
        let conceptType = try indices("/local/concept_type", count: concepts.count, below: 3, of: "concept types")
        return SnapshotTaxonomy(categories: categories, subgroups: subgroups, subgroupCategory: subgroupCategory,
                                regions: regions, concepts: concepts, conceptRegion: conceptRegion,
                                conceptType: conceptType.map(Int32.init))
    }

    /// The layers the user asked for (all when `requested` is empty), each checked to exist.
    public func resolveLayers(_ requested: [String]) throws -> [String] {
        if requested.isEmpty { return layerNames }
        var seen = Set<String>()
        return try requested.filter { seen.insert($0).inserted }.map { name in
            guard layerNames.contains(name) else {
                throw ReportError("\(path): no layer \"\(name)\" with snapshots; layers in this file: \(layerNames.joined(separator: ", "))")
            }
            return name
        }
    }

    /// Units, dimensions and the bookkeeping rows of one layer, checked for consistent shapes.
    public func layer(_ name: String) throws -> LayerRows {
        let group = "/layers/\(name)"
        let steps = try file.read("\(group)/step", as: Int64.self).values
        let t = steps.count
        let runs = try file.readStrings("\(group)/run")
        let seen = try file.read("\(group)/images_seen", as: Int64.self).values
        let total = try file.read("\(group)/images_total", as: Int64.self).values
        let complete = try file.read("\(group)/complete", as: UInt8.self).values
        let time = try file.read("\(group)/time_unix", as: Double.self).values
        for (dataset, count) in [("run", runs.count), ("images_seen", seen.count), ("images_total", total.count),
                                 ("complete", complete.count), ("time_unix", time.count)] where count != t {
            throw ReportError("\(path): \(group)/\(dataset): \(count) rows, but \(group)/step has \(t)")
        }
        let thresholdShape = try file.shape(of: "\(group)/threshold")
        guard thresholdShape.count == 2, thresholdShape[0] == t else {
            throw ReportError("\(path): \(group)/threshold: shape \(thresholdShape), expected [\(t), units]")
        }
        let units = thresholdShape[1]
        let g = taxonomy.subgroups.count, l = taxonomy.concepts.count
        let expected: [(String, [Int])] = [
            ("global_prob", [t, units, g]), ("global_biased", [t, units, g]), ("iou", [t, units, l]),
            ("region", [t, units]), ("local_prob", [t, units, l]), ("local_paired", [t, units, l]),
            ("netdissect_concept", [t, units]),
        ]
        for (dataset, shape) in expected {
            let found = try file.shape(of: "\(group)/\(dataset)")
            guard found == shape else {
                throw ReportError("\(path): \(group)/\(dataset): shape \(found), expected \(shape) (rows × units × …)")
            }
        }
        var topImages = 0
        if file.exists("\(group)/top_images") {
            let shape = try file.shape(of: "\(group)/top_images")
            guard shape.count == 3, shape[0] == t, shape[1] == units else {
                throw ReportError("\(path): \(group)/top_images: shape \(shape), expected [\(t), \(units), k]")
            }
            topImages = shape[2]
        }
        let rows = (0..<t).map { i in
            SnapshotRow(index: i, run: runs[i], step: steps[i], imagesSeen: seen[i], imagesTotal: total[i],
                        complete: complete[i] != 0, timeUnix: time[i])
        }
        return LayerRows(name: name, units: units, topImageCount: topImages, rows: rows)
    }

    /// Which fields of a row to read: the timeline needs only the labels, not the probabilities.
    public enum Detail { case labels, everything }

    /// One row of a layer as the engine's `LayerSnapshot`, so the counts come from `SnapshotSummary`.
    public func snapshot(_ layer: LayerRows, row: Int, detail: Detail) throws -> LayerSnapshot {
        let r = layer.rows[row]
        var s = LayerSnapshot(layer: layer.name, imagesSeen: Int(r.imagesSeen), imagesTotal: Int(r.imagesTotal),
                              units: layer.units, subgroupCount: taxonomy.subgroups.count,
                              conceptCount: taxonomy.concepts.count, topImageCount: layer.topImageCount)
        s.run = r.run
        s.step = r.step
        s.timeUnix = r.timeUnix
        let group = "/layers/\(layer.name)"
        var buffer: [Float] = []
        func readRow(_ dataset: String) throws -> [Float] {
            try file.readRows("\(group)/\(dataset)", start: row, count: 1, into: &buffer)
            return buffer
        }
        func labels(_ dataset: String, below limit: Int, what: String) throws -> [Int32] {
            let values = try readRow(dataset)
            if let bad = values.firstIndex(where: { !($0 >= -1 && $0 < Float(limit)) || $0 != $0.rounded() }) {
                throw ReportError("\(path): \(group)/\(dataset): row \(row), unit \(bad): \(values[bad]) is not −1 or one of the \(limit) \(what)")
            }
            return values.map { Int32($0) }
        }
        s.region = try labels("region", below: taxonomy.regions.count, what: "regions")
        s.netdissectConcept = try labels("netdissect_concept", below: taxonomy.concepts.count, what: "concepts")
        s.globalBiased = try readRow("global_biased").map { $0 != 0 ? 1 : 0 }
        s.localPaired = try readRow("local_paired").map { $0 != 0 ? 1 : 0 }
        guard detail == .everything else { return s }
        s.threshold = try readRow("threshold")
        s.globalProb = try readRow("global_prob")
        s.iou = try readRow("iou")
        s.localProb = try readRow("local_prob")
        if layer.topImageCount > 0 {
            s.topImages = try readRow("top_images").map { $0.isFinite && $0 >= 0 ? Int64($0) : -1 }
        }
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

    /// The row a report shows: the latest complete one, or with `step` the latest (preferably
    /// complete) row of that step. Falls back to the latest row when no row is complete.
    public func selectRow(step: Int64?, path: String) throws -> SnapshotRow {
        if let step {
            let matching = rows.filter { $0.step == step }
            guard let chosen = matching.last(where: \.complete) ?? matching.last else {
                throw ReportError("\(path): layer \(name): no snapshot at step \(step); steps present: \(Self.describe(steps: rows.map(\.step)))")
            }
            return chosen
        }
        return rows.last(where: \.complete) ?? rows[rows.count - 1]
    }

    /// The complete rows of one run, one per step (the latest when a step was dissected twice),
    /// in step order: the training timeline.
    public func timelineRows(run: String) -> [SnapshotRow] {
        var latest = [Int64: SnapshotRow]()
        for row in rows where row.complete && row.run == run { latest[row.step] = row }
        return latest.values.sorted { $0.step < $1.step }
    }

    /// "0, 100, 200" or, for many, "0, 100, 200, …, 29,900 (300 distinct steps)".
    static func describe(steps: [Int64]) -> String {
        let distinct = Array(Set(steps)).sorted()
        if distinct.count <= 12 { return distinct.map(String.init).joined(separator: ", ") }
        let head = distinct.prefix(5).map(String.init), tail = distinct.suffix(3).map(String.init)
        return (head + ["…"] + tail).joined(separator: ", ") + " (\(distinct.count) distinct steps)"
    }
}
