import CHDF5
import HNDEngine

/// The snapshot file's format (docs/4-snapshots.md) as data. The file holds the dictionary's taxonomy (the
/// `/global` and `/local` groups of a Face Dictionary) and, per layer, a group
/// `/layers/<layer>` (attribute `units` = C) whose datasets all grow by one row per snapshot.
/// `SnapshotFile` writes and `SnapshotReader` reads exactly the datasets of `datasets`, in that
/// order: a dataset is added, retyped or reshaped here and nowhere else.
public enum SnapshotSchema {
    public static let format = "hndd-snapshots"
    public static let version: Int32 = 1
    public static let layersGroup = "/layers"
    /// Bytes of a stored run name (fixed-length UTF-8, padded with 0x00): a longer name is refused.
    public static let runBytes = 256
    /// Attribute of a layer's group: its number of units C.
    public static let unitsAttribute = "units"

    public static func group(ofLayer layer: String) -> String { layersGroup + "/" + layer }

    /// A file holds the significance tests (issue 17) of its complete rows iff it has this dataset.
    public static let significanceFlag = "global_significant"
    /// A complete row holds the change test against its run's baseline pass iff this dataset's row
    /// is not NaN (the counts read it with the flags).
    public static let changeP = "global_change_p"

    /// Every dataset of a layer's group.
    public static var datasets: [SnapshotDataset] {
        [
            .strings("run", "the run's name, as the trainer sent it", \.run, into: \.run),
            .perRow("step", Int64.self, "the training step of the probe pass", { $0.step }, into: \.step),
            .perRow("images_seen", Int64.self, "dictionary images the pass had received", { Int64($0.imagesSeen) }, into: \.imagesSeen),
            .perRow("images_total", Int64.self, "images of the dictionary", { Int64($0.imagesTotal) }, into: \.imagesTotal),
            .perRow("complete", UInt8.self, "1 when every dictionary image arrived, else 0 (a partial pass)",
                    { $0.complete ? 1 : 0 }, into: { $0.complete = $1 != 0 }),
            .perRow("time_unix", Double.self, "when the snapshot was taken, seconds since 1970 (UTC)", { $0.timeUnix }, into: \.timeUnix),
            .perUnit("threshold", [.units], .values, "T_u, the unit's activation threshold (Stage II); NaN before any local-set image", \.threshold),
            .perUnit("global_prob", [.units, .subgroups], .values, "P of each subgroup within its category (Stage I)", \.globalProb),
            .flags("global_biased", [.units, .subgroups], "1 when the unit is biased toward the subgroup: P ≥ 1/S + 0.05", \.globalBiased),
            .perUnit("iou", [.units, .concepts], .values, "IoU of the unit's thresholded maps with each concept's masks (Stage II)", \.iou),
            .labels("region", of: .regions, "the region of the unit's best-IoU concept, −1 when that IoU is below the floor", \.region),
            .perUnit("local_prob", [.units, .concepts], .values, "P of each concept of the unit's region (Stage III), 0 outside it", \.localProb),
            .flags("local_paired", [.units, .concepts], "1 when the unit is paired with the concept: P > 1.5/K_r", \.localPaired),
            .labels("netdissect_concept", of: .concepts, "the Network Dissection baseline's label: the best-IoU concept, −1 below the floor", \.netdissectConcept),
            // Significance (issue 17): complete passes only; a partial row holds NaN p-values and no flags.
            .perUnit("global_p", [.units, .subgroups], .values,
                     "Benjamini–Hochberg adjusted p-value of P under the permutation null (Stage I); 1 untested, NaN in a partial pass",
                     \.globalP, optional: true),
            .flags(significanceFlag, [.units, .subgroups], "1 when biased and global_p ≤ \(FalseDiscovery.rate)", \.globalSignificant, optional: true),
            .perUnit("local_p", [.units, .concepts], .values,
                     "adjusted p-value of P (Stage III); 1 outside the unit's region, NaN in a partial pass", \.localP, optional: true),
            .flags("local_significant", [.units, .concepts], "1 when paired and local_p ≤ \(FalseDiscovery.rate)", \.localSignificant, optional: true),
            // Beyond the untrained network (issue 17): complete passes of a layer with a baseline pass.
            .perUnit(changeP, [.units, .subgroups], .values,
                     "adjusted p-value of \"P rose since the run's baseline pass\" (Stage I); 1 untested, NaN without a baseline or in a partial pass",
                     \.globalChangeP, optional: true),
            .flags("global_beyond_untrained", [.units, .subgroups],
                   "1 when global_significant and global_change_p ≤ \(FalseDiscovery.rate) (biased beyond the untrained network)",
                   \.globalBeyondUntrained, optional: true),
            .imageIDs("top_images", "ids of the k images with the unit's largest maxima, largest first; −1 pads", \.topImages),
        ]
    }

    /// The taxonomy datasets the file copies from its dictionary (docs/1-dictionary.md), read back for names.
    public static let categories = "/global/categories"
    public static let subgroups = "/global/subgroups"
    public static let subgroupCategory = "/global/subgroup_category"
    public static let regions = "/local/regions"
    public static let concepts = "/local/concepts"
    public static let conceptRegion = "/local/concept_region"
    public static let conceptType = "/local/concept_type"
}

/// How a dataset's elements are stored.
public enum SnapshotElement: String, Sendable {
    case string, int64, int32, uint8, float32, float64

    var typeClass: H5T_class_t {
        switch self {
        case .string: H5T_STRING
        case .int64, .int32, .uint8: H5T_INTEGER
        case .float32, .float64: H5T_FLOAT
        }
    }
}

/// An axis of a dataset after its first, which has one entry per snapshot row (T).
public enum SnapshotAxis: String, Sendable {
    /// C, the layer's units.
    case units = "C"
    /// G, the dictionary's global subgroups.
    case subgroups = "G"
    /// L, the dictionary's local concepts.
    case concepts = "L"
    /// k, the top images kept per unit.
    case topImages = "k"
}

/// One dataset of a layer's group, `/layers/<layer>/<name>`, of shape [T] + `axes`.
public struct SnapshotDataset: Sendable {
    /// What a reader does with the values of one row.
    public enum Kind: Sendable, Equatable {
        /// Bookkeeping of the row (one value per row, read as a whole column).
        case row
        /// Plain values.
        case values
        /// 0/1 flags (any non-zero reads as 1); the counts need them.
        case flags
        /// An index into the taxonomy's regions or concepts, or −1; the counts need them.
        case labels(SnapshotTaxonomy.Level)
        /// Image ids, −1 for none.
        case imageIDs
    }

    public let name: String
    public let element: SnapshotElement
    public let axes: [SnapshotAxis]
    public let kind: Kind
    /// Files written before the dataset existed lack it; a reader then keeps the snapshot's default.
    public let optional: Bool
    public let meaning: String
    let io: SnapshotColumnIO

    /// Whether `SnapshotSummary`'s counts read it (the timeline reads only those).
    public var isCounted: Bool {
        switch kind {
        case .flags, .labels: true
        case .row, .values, .imageIDs: false
        }
    }

    /// "[T, C, G]"-style shape, for messages and documentation.
    public var shapeDescription: String { "[" + (["T"] + axes.map(\.rawValue)).joined(separator: ", ") + "]" }
}

/// The taxonomy a snapshot file carries (the `/global` and `/local` groups of its dictionary),
/// as a `FaceDictionary` of no images: the type that holds a taxonomy in the engine.
public typealias SnapshotTaxonomy = FaceDictionary

extension FaceDictionary {
    /// The taxonomy lists a snapshot dataset can index into.
    public enum Level: String, Sendable, Equatable {
        case regions, concepts
    }

    public func count(of level: Level) -> Int {
        switch level {
        case .regions: regions.count
        case .concepts: concepts.count
        }
    }
}
