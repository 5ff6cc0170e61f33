/// The Face Dictionary of docs/1-dictionary.md, in memory, without its pixels: the concept taxonomy and each
/// image's labels and masks — ellipses (version 1), or rasters, which a version-2 file may hold
/// and which then define every mask. Immutable once validated; the engine derives everything else.
public struct FaceDictionary: Sendable {
    public enum ConceptType: Int32, Sendable { case part = 0, attribute = 1, actionUnit = 2 }

    public var categories: [String]
    public var subgroups: [String]
    /// Index into `categories`, one per subgroup.
    public var subgroupCategory: [Int32]
    public var regions: [String]
    public var concepts: [String]
    /// Index into `regions`, one per concept.
    public var conceptRegion: [Int32]
    public var conceptType: [Int32]
    /// [N, Gc] row-major: a global subgroup index, or −1 when not labelled for that category.
    public var globalLabel: [Int32]
    /// [N, L] row-major: 1 present, 0 absent, −1 not annotated.
    public var localLabel: [Int8]
    /// [N, L, 5] row-major: cx, cy, sxx, sxy, syy; meaningful only where the concept is present.
    /// Only informative when `rasters` define the masks: then it may be NaN, or empty (not kept).
    public var ellipse: [Float]
    public var maskSize: Int
    public var ellipseChi2: Double
    /// docs/1-dictionary.md's version: 1, or 2 (which may hold raster masks).
    public var version: Int
    /// The raster masks (`/images/masks`); when present they define every mask.
    public var rasters: MaskRasters?
    /// Each image's path relative to the folder it came from (`/images/source`), when known.
    public var imageSources: [String]?

    public var imageCount: Int { concepts.isEmpty ? 0 : localLabel.count / concepts.count }
    public var categoryCount: Int { categories.count }
    public var subgroupCount: Int { subgroups.count }
    public var conceptCount: Int { concepts.count }
    public var regionCount: Int { regions.count }

    /// The engine keeps one bit per concept in a `UInt64`.
    public static let maxConcepts = 64
    /// docs/1-dictionary.md's default `ellipse_chi2`: the 95 % χ²₂ value.
    public static let defaultEllipseChi2 = 5.991
    /// The versions of docs/1-dictionary.md hndd reads: 1 (ellipses), 2 (raster masks may be present).
    public static let versions = 1...2
    public static func unknownVersion(_ version: Int) -> String {
        "is \(version); this hndd reads versions \(versions.map(String.init).joined(separator: " and ")) of docs/1-dictionary.md"
    }

    public init(categories: [String], subgroups: [String], subgroupCategory: [Int32],
                regions: [String], concepts: [String], conceptRegion: [Int32], conceptType: [Int32],
                globalLabel: [Int32], localLabel: [Int8], ellipse: [Float],
                maskSize: Int, ellipseChi2: Double = FaceDictionary.defaultEllipseChi2,
                version: Int = 1, rasters: MaskRasters? = nil, imageSources: [String]? = nil) {
        self.categories = categories
        self.subgroups = subgroups
        self.subgroupCategory = subgroupCategory
        self.regions = regions
        self.concepts = concepts
        self.conceptRegion = conceptRegion
        self.conceptType = conceptType
        self.globalLabel = globalLabel
        self.localLabel = localLabel
        self.ellipse = ellipse
        self.maskSize = maskSize
        self.ellipseChi2 = ellipseChi2
        self.version = version
        self.rasters = rasters
        self.imageSources = imageSources
    }

    @inlinable public func globalLabel(image n: Int, category g: Int) -> Int32 {
        globalLabel[n * categories.count + g]
    }
    @inlinable public func localLabel(image n: Int, concept c: Int) -> Int8 {
        localLabel[n * concepts.count + c]
    }

    /// "image 17", with its source path when the dictionary has one: for messages.
    public func imageName(_ n: Int) -> String { Self.imageName(n, sources: imageSources) }

    public static func imageName(_ n: Int, sources: [String]?) -> String {
        guard let sources, n >= 0, n < sources.count, !sources[n].isEmpty else { return "image \(n)" }
        return "image \(n) (\(sources[n]))"
    }

    /// Number of subgroups of each category (S_g of Stage I), from the taxonomy, not the labels.
    public var subgroupsPerCategory: [Int] {
        var counts = [Int](repeating: 0, count: categories.count)
        for g in subgroupCategory { counts[Int(g)] += 1 }
        return counts
    }

    /// Number of concepts of each region (K_r of Stage III).
    public var conceptsPerRegion: [Int] {
        var counts = [Int](repeating: 0, count: regions.count)
        for r in conceptRegion { counts[Int(r)] += 1 }
        return counts
    }

    /// Checks every rule of docs/1-dictionary.md the engine relies on. `source` names the file in messages.
    public func validate(source: String = "dictionary") throws(DictionaryError) {
        func fail(_ dataset: String, _ what: String) -> DictionaryError {
            DictionaryError(source: source, dataset: dataset, message: what)
        }
        guard Self.versions.contains(version) else { throw fail("/ (attribute version)", Self.unknownVersion(version)) }
        guard maskSize > 0 else { throw fail("/ (attribute mask_size)", "mask_size must be positive, got \(maskSize)") }
        guard ellipseChi2.isFinite, ellipseChi2 > 0 else {
            throw fail("/ (attribute ellipse_chi2)", "ellipse_chi2 must be a positive number, got \(ellipseChi2)")
        }
        guard subgroupCategory.count == subgroups.count else {
            throw fail("/global/subgroup_category", "has \(subgroupCategory.count) entries for \(subgroups.count) subgroups")
        }
        for (s, g) in subgroupCategory.enumerated() where g < 0 || Int(g) >= categories.count {
            throw fail("/global/subgroup_category", "subgroup \(s) (\(subgroups[s])) names category \(g), but there are \(categories.count) categories")
        }
        guard !concepts.isEmpty else { throw fail("/local/concepts", "no local concepts") }
        guard concepts.count <= Self.maxConcepts else {
            throw fail("/local/concepts", "\(concepts.count) local concepts; hndd supports at most \(Self.maxConcepts)")
        }
        guard conceptRegion.count == concepts.count else {
            throw fail("/local/concept_region", "has \(conceptRegion.count) entries for \(concepts.count) concepts")
        }
        guard conceptType.count == concepts.count else {
            throw fail("/local/concept_type", "has \(conceptType.count) entries for \(concepts.count) concepts")
        }
        for (c, r) in conceptRegion.enumerated() where r < 0 || Int(r) >= regions.count {
            throw fail("/local/concept_region", "concept \(c) (\(concepts[c])) names region \(r), but there are \(regions.count) regions")
        }
        for (c, t) in conceptType.enumerated() where ConceptType(rawValue: t) == nil {
            throw fail("/local/concept_type", "concept \(c) (\(concepts[c])) has type \(t); expected 0 (part), 1 (attribute) or 2 (action unit)")
        }
        let n = localLabel.count / concepts.count
        guard localLabel.count == n * concepts.count else {
            throw fail("/images/local_label", "has \(localLabel.count) values, not a multiple of \(concepts.count) concepts")
        }
        guard n > 0 else { throw fail("/images/local_label", "the dictionary has no images") }
        guard globalLabel.count == n * categories.count else {
            throw fail("/images/global_label", "shape does not match [\(n), \(categories.count)] (images × categories)")
        }
        guard ellipse.count == n * concepts.count * 5 || (rasters != nil && ellipse.isEmpty) else {
            throw fail("/images/ellipse", "shape does not match [\(n), \(concepts.count), 5]")
        }
        if let imageSources, imageSources.count != n {
            throw fail("/images/source", "has \(imageSources.count) entries for \(n) images")
        }
        if let rasters { try validate(rasters, images: n, fail: fail) }
        for image in 0..<n {
            for g in 0..<categories.count {
                let s = globalLabel[image * categories.count + g]
                if s == -1 { continue }
                guard s >= 0, Int(s) < subgroups.count else {
                    throw fail("/images/global_label", "\(imageName(image)), category \(g) (\(categories[g])): subgroup index \(s) is out of range 0..<\(subgroups.count) (−1 means unlabelled)")
                }
                guard Int(subgroupCategory[Int(s)]) == g else {
                    throw fail("/images/global_label", "\(imageName(image)), category \(g) (\(categories[g])): subgroup \(s) (\(subgroups[Int(s)])) belongs to category \(subgroupCategory[Int(s)])")
                }
            }
            for c in 0..<concepts.count {
                let label = localLabel[image * concepts.count + c]
                guard label >= -1, label <= 1 else {
                    throw fail("/images/local_label", "\(imageName(image)), concept \(c) (\(concepts[c])): label \(label) is not 1, 0 or −1")
                }
                if label == 1, rasters == nil {
                    let base = (image * concepts.count + c) * 5
                    for k in 0..<5 where !ellipse[base + k].isFinite {
                        throw fail("/images/ellipse", "\(imageName(image)), concept \(c) (\(concepts[c])) is present but its ellipse has a non-finite value (\(ellipse[base + k]) at component \(k))")
                    }
                }
            }
        }
    }
}

/// A dictionary that breaks docs/1-dictionary.md, located precisely enough to fix.
public struct DictionaryError: Error, CustomStringConvertible, Equatable {
    public var source: String
    public var dataset: String
    public var message: String
    public init(source: String, dataset: String, message: String) {
        self.source = source
        self.dataset = dataset
        self.message = message
    }
    public var description: String { "\(source): \(dataset): \(message)" }
}
