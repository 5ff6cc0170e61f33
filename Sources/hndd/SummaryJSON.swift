import Foundation
import HNDEngine

/// One snapshot's counts as one line of JSON: what `subscribe --json` prints per published
/// snapshot and `summary --json` per row of a snapshot file, with the same keys.
enum SummaryJSON {
    /// `duplicates` is nil where it is unknown (a snapshot file does not record it): JSON null.
    static func line(_ s: LayerSnapshot, complete: Bool, summary: SnapshotSummary, changes: [String], duplicates: Int?) -> String {
        func counts(_ list: [SnapshotSummary.Count]) -> [String: Int] { Dictionary(list.map { ($0.name, $0.units) }, uniquingKeysWith: +) }
        let object: [String: Any] = [
            "layer": s.layer, "run": s.run, "step": s.step, "images_seen": s.imagesSeen, "images_total": s.imagesTotal,
            "complete": complete, "time_unix": s.timeUnix, "units": summary.units, "interpretable_units": summary.interpretable,
            "netdissect_units": summary.netdissect, "localised_units": summary.localised, "biased_units": summary.biased,
            "paired_units": summary.paired,
            "coverage": ["paired_and_biased": summary.coverage.pairedAndBiased, "paired_only": summary.coverage.pairedOnly,
                         "biased_only": summary.coverage.biasedOnly],
            "units_per_region": counts(summary.unitsPerRegion), "units_per_concept": counts(summary.conceptUnits),
            "units_per_subgroup": counts(summary.subgroupUnits), "units_per_category": counts(summary.categoryUnits),
            "units_per_type": counts(summary.typeUnits), "netdissect_units_per_concept": counts(summary.netdissectConceptUnits),
            "duplicates_reported": duplicates.map { $0 as Any } ?? NSNull(), "changes_since_previous_pass": changes,
            "significant": significant(summary.significant),
            "significance_skipped": summary.significant != nil ? NSNull() : (complete ? Self.predates : Self.partial),
            "beyond_untrained": beyondUntrained(summary.beyondUntrained),
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        // The two per-unit arrays are joined here: through JSONSerialization (an NSNumber per
        // unit) they were three quarters of `summary --json`'s time on a file of 2,048 units.
        func list(_ values: [Int32]) -> String { "[" + values.map(String.init).joined(separator: ",") + "]" }
        return String(decoding: data.dropLast(), as: UTF8.self)
            + ",\"netdissect_concept\":\(list(s.netdissectConcept)),\"region\":\(list(s.region))}"
    }

    /// Units biased beyond the untrained network (the run's baseline pass), or null when the
    /// snapshot has no change test (a partial pass, no baseline yet, or a file from before it).
    static func beyondUntrained(_ b: SnapshotSummary.BeyondUntrained?) -> Any {
        guard let b else { return NSNull() }
        func counts(_ list: [SnapshotSummary.Count]) -> [String: Int] { Dictionary(list.map { ($0.name, $0.units) }, uniquingKeysWith: +) }
        return ["units": b.units, "units_per_category": counts(b.categoryUnits), "units_per_subgroup": counts(b.subgroupUnits)]
    }

    static let partial = "partial pass: significance is computed at complete passes only"
    static let predates = "the snapshot predates the significance tests"

    /// The significant counts beside the paper's, or null with the reason when the snapshot
    /// skipped the tests.
    static func significant(_ s: SnapshotSummary.Significant?) -> Any {
        guard let s else { return NSNull() }
        func counts(_ list: [SnapshotSummary.Count]) -> [String: Int] { Dictionary(list.map { ($0.name, $0.units) }, uniquingKeysWith: +) }
        return ["false_discovery_rate": FalseDiscovery.rate, "interpretable_units": s.interpretable, "biased_units": s.biased,
                "paired_units": s.paired, "units_per_concept": counts(s.conceptUnits), "units_per_subgroup": counts(s.subgroupUnits)]
    }
}
