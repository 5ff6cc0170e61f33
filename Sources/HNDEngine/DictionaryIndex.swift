/// Everything the engine derives from the dictionary once, before the first batch: the image
/// sets of docs/3-numbers.md (D_L, D_c, D_g, D_r), the |M| count rows each image feeds, and each present
/// concept's mask (in pieces). Shared, read-only, by every layer.
public struct DictionaryIndex: Sendable {
    public let dictionary: FaceDictionary
    public let imageCount: Int
    public let conceptCount: Int

    /// D_L membership: some local label ≥ 0.
    public let inLocalSet: [Bool]
    public let localSetSize: Int
    /// Bit c set when concept c is present on the image.
    public let presentConcepts: [UInt64]
    /// Bit c set when the image is annotated for concept c (D_c membership).
    public let annotatedConcepts: [UInt64]
    /// [N, L] pixel count of each present concept's mask (0 for an empty one).
    public let maskArea: [Int32]
    /// Each present concept's mask as pieces of row runs.
    public let spans: ConceptSpans

    /// Σ|M| for concept c runs over D_c only. Images are grouped by *annotation pattern* (the set
    /// of concepts an image is annotated for; usually one per source dataset): count row p
    /// holds |M| of the images of pattern p, and Σ|M| for c is the sum of the rows of the
    /// patterns containing c. With more than `maxPatternRows` patterns, rows become one per
    /// concept (an image feeding every concept it is annotated for). Rows `countRows + c` count
    /// |M ∩ L_c|.
    public static let maxPatternRows = 16
    /// Number of |M| rows.
    public let countRows: Int
    /// Per image in D_L, a bit for each |M| row it feeds.
    public let countRowsOfImage: [UInt64]
    /// For each concept, the |M| rows to add up for Σ_{n∈D_c} |M|.
    public let countRowsOfConcept: [[Int]]
    public var stageTwoRows: Int { countRows + conceptCount }

    /// Per category g: the images of D_g and their subgroup label.
    public let categoryMembers: [[(image: Int32, subgroup: Int32)]]
    /// Per region r: the images of D_r (some concept of r present).
    public let regionMembers: [[Int32]]
    /// Bit mask of the concepts of each region.
    public let regionConcepts: [UInt64]

    public init(_ dictionary: FaceDictionary) {
        self.dictionary = dictionary
        let n = dictionary.imageCount, l = dictionary.conceptCount
        imageCount = n
        conceptCount = l
        var inLocal = [Bool](repeating: false, count: n)
        var present = [UInt64](repeating: 0, count: n)
        var annotated = [UInt64](repeating: 0, count: n)
        var area = [Int32](repeating: 0, count: n * l)
        for image in 0..<n {
            for c in 0..<l {
                let label = dictionary.localLabel(image: image, concept: c)
                if label >= 0 { annotated[image] |= 1 << UInt64(c); inLocal[image] = true }
                if label == 1 { present[image] |= 1 << UInt64(c) }
            }
        }
        spans = ConceptSpans(dictionary)
        for image in 0..<n {
            for mask in spans.masks(ofImage: image) {
                area[image * l + Int(mask.concept)] += Int32(spans.area(of: mask)) // a mask's pieces are disjoint
            }
        }
        inLocalSet = inLocal
        localSetSize = inLocal.lazy.filter { $0 }.count
        presentConcepts = present
        annotatedConcepts = annotated
        maskArea = area

        var patterns = [UInt64]()
        for image in 0..<n where inLocal[image] && !patterns.contains(annotated[image]) {
            patterns.append(annotated[image])
            if patterns.count > Self.maxPatternRows { break }
        }
        if patterns.count <= Self.maxPatternRows {
            countRows = patterns.count
            countRowsOfImage = (0..<n).map { image in
                inLocal[image] ? 1 << UInt64(patterns.firstIndex(of: annotated[image])!) : 0
            }
            countRowsOfConcept = (0..<l).map { c in
                patterns.indices.filter { patterns[$0] & (1 << UInt64(c)) != 0 }
            }
        } else {
            countRows = l
            countRowsOfImage = annotated
            countRowsOfConcept = (0..<l).map { [$0] }
        }

        var members = [[(image: Int32, subgroup: Int32)]](repeating: [], count: dictionary.categoryCount)
        for image in 0..<n {
            for g in 0..<dictionary.categoryCount {
                let s = dictionary.globalLabel(image: image, category: g)
                if s >= 0 { members[g].append((Int32(image), s)) }
            }
        }
        categoryMembers = members

        var regionMask = [UInt64](repeating: 0, count: dictionary.regionCount)
        for c in 0..<l { regionMask[Int(dictionary.conceptRegion[c])] |= 1 << UInt64(c) }
        regionConcepts = regionMask
        regionMembers = regionMask.map { mask in
            (0..<n).filter { present[$0] & mask != 0 }.map(Int32.init)
        }
    }
}
