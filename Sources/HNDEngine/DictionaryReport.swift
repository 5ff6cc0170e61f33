/// What `hndd dictionary check` prints: the images behind each concept (the paper's Fig. 3) and
/// what would weaken a dissection (concepts nobody has, empty masks).
public struct DictionaryReport: Sendable {
    public let index: DictionaryIndex
    /// How many (image, concept) pairs with an empty mask are listed by name.
    public static let listedEmptyMasks = 10

    public init(_ index: DictionaryIndex) { self.index = index }

    public func text(source: String) -> String {
        let d = index.dictionary
        var lines: [String] = []
        lines.append("\(source): valid hndd dictionary — \(index.imageCount) images, mask \(d.maskSize)×\(d.maskSize), version \(d.version)")
        lines.append(d.rasters != nil
                     ? "masks: rasters (/images/masks); /images/ellipse is only informative"
                     : "masks: ellipses (/images/ellipse), χ² \(d.ellipseChi2)")
        if let pieces = pieceSummary { lines.append(pieces) }
        lines.append("local set D_L: \(index.localSetSize) images; annotation patterns: \(index.countRows == index.conceptCount && index.countRows > DictionaryIndex.maxPatternRows ? "many (one |M| row per concept)" : String(index.countRows))")
        lines.append("")
        lines.append("global concepts (images labelled):")
        for (g, category) in d.categories.enumerated() {
            let labelled = index.categoryMembers[g]
            lines.append("  \(category): \(labelled.count) images")
            for s in 0..<d.subgroupCount where d.subgroupCategory[s] == Int32(g) {
                let count = labelled.filter { $0.subgroup == Int32(s) }.count
                lines.append("    \(pad(d.subgroups[s], 14)) \(pad(String(count), 7, left: true))  \(bar(count, of: index.imageCount))")
            }
        }
        lines.append("")
        lines.append("local concepts (images present / annotated; empty masks):")
        let types = ["part", "attribute", "action unit"]
        var warnings: [String] = []
        let empties = emptyMasks
        for (r, region) in d.regions.enumerated() {
            lines.append("  \(region): \(index.regionMembers[r].count) images with some concept of the region")
            for c in 0..<d.conceptCount where d.conceptRegion[c] == Int32(r) {
                let bit = UInt64(1) << UInt64(c)
                var present = 0, annotated = 0
                for n in 0..<index.imageCount {
                    if index.annotatedConcepts[n] & bit != 0 { annotated += 1 }
                    if index.presentConcepts[n] & bit != 0 { present += 1 }
                }
                let empty = empties.filter { $0.concept == c }.count
                let type = types[Int(d.conceptType[c])]
                lines.append("    \(pad(d.concepts[c], 20)) \(pad(type, 11)) \(pad(String(present), 7, left: true)) / \(pad(String(annotated), 7, left: true))  \(empty > 0 ? "\(empty) empty  " : "")\(bar(present, of: index.imageCount))")
                if present == 0 { warnings.append("concept \(d.concepts[c]) is present on no image: its IoU is always 0") }
                if empty > 0 {
                    warnings.append("concept \(d.concepts[c]): \(empty) present masks are empty (\(d.rasters != nil ? "rasters without a set pixel" : "singular or tiny ellipses"))")
                }
            }
        }
        lines.append("")
        lines += emptyMaskLines(empties)
        for (g, category) in d.categories.enumerated() where index.categoryMembers[g].isEmpty {
            warnings.append("category \(category) labels no image: its probabilities are always 0")
        }
        if !warnings.isEmpty {
            lines.append("")
            lines.append("warnings:")
            lines += warnings.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    /// How many present concepts have an empty mask, and the first few by image and concept.
    func emptyMaskLines(_ empties: [(image: Int, concept: Int)]) -> [String] {
        let d = index.dictionary
        let listed = empties.count > Self.listedEmptyMasks ? ", the first \(Self.listedEmptyMasks):" : (empties.isEmpty ? "" : ":")
        return ["present concepts with empty masks: \(empties.count) (image, concept) pairs" + listed]
            + empties.prefix(Self.listedEmptyMasks).map { "  \(d.imageName($0.image)): \(d.concepts[$0.concept])" }
    }

    /// Every (image, concept) pair whose concept is present but whose mask has no pixel, in order.
    public var emptyMasks: [(image: Int, concept: Int)] {
        var pairs: [(image: Int, concept: Int)] = []
        let l = index.conceptCount
        for n in 0..<index.imageCount {
            var bits = index.presentConcepts[n]
            while bits != 0 {
                let c = bits.trailingZeroBitCount
                if index.maskArea[n * l + c] == 0 { pairs.append((n, c)) }
                bits &= bits - 1
            }
        }
        return pairs
    }

    /// How Stage II holds raster masks: pieces of one run per row (nil for ellipses: one each).
    var pieceSummary: String? {
        let spans = index.spans, d = index.dictionary
        guard d.rasters != nil else { return nil }
        var concepts = 0
        for n in 0..<index.imageCount { concepts += (index.presentConcepts[n]).nonzeroBitCount }
        return "Stage II holds them as \(spans.masks.count) pieces of one run per row (\(concepts) present concepts; at most \(spans.maxMasksPerImage) pieces on one image)"
    }

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }

    private func bar(_ count: Int, of total: Int) -> String {
        String(repeating: "█", count: total > 0 ? Int((Double(count) / Double(total) * 30).rounded()) : 0)
    }
}
