/// What `hndd dictionary check` prints: the images behind each concept (the paper's Fig. 3) and
/// what would weaken a dissection (concepts nobody has, empty masks).
public struct DictionaryReport: Sendable {
    public let index: DictionaryIndex
    public init(_ index: DictionaryIndex) { self.index = index }

    public func text(source: String) -> String {
        let d = index.dictionary
        var lines: [String] = []
        lines.append("\(source): valid hndd dictionary — \(index.imageCount) images, mask \(d.maskSize)×\(d.maskSize), χ² \(d.ellipseChi2)")
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
        for (r, region) in d.regions.enumerated() {
            lines.append("  \(region): \(index.regionMembers[r].count) images with some concept of the region")
            for c in 0..<d.conceptCount where d.conceptRegion[c] == Int32(r) {
                let bit = UInt64(1) << UInt64(c)
                var present = 0, annotated = 0, empty = 0
                for n in 0..<index.imageCount {
                    if index.annotatedConcepts[n] & bit != 0 { annotated += 1 }
                    if index.presentConcepts[n] & bit != 0 {
                        present += 1
                        if index.maskArea[n * d.conceptCount + c] == 0 { empty += 1 }
                    }
                }
                let type = types[Int(d.conceptType[c])]
                lines.append("    \(pad(d.concepts[c], 20)) \(pad(type, 11)) \(pad(String(present), 7, left: true)) / \(pad(String(annotated), 7, left: true))  \(empty > 0 ? "\(empty) empty  " : "")\(bar(present, of: index.imageCount))")
                if present == 0 { warnings.append("concept \(d.concepts[c]) is present on no image: its IoU is always 0") }
                if empty > 0 { warnings.append("concept \(d.concepts[c]): \(empty) present masks are empty (singular or tiny ellipses)") }
            }
        }
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

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }

    private func bar(_ count: Int, of total: Int) -> String {
        String(repeating: "█", count: total > 0 ? Int((Double(count) / Double(total) * 30).rounded()) : 0)
    }
}
