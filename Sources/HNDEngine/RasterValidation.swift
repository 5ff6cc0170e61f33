extension FaceDictionary {
    /// docs/1-dictionary.md's rules for raster masks: one mask per image and concept on the S×S grid, runs in
    /// order and inside it, and pixels only where the concept is present (`local_label = 1`; a
    /// present concept may have an empty mask).
    func validate(_ rasters: MaskRasters, images n: Int,
                  fail: (String, String) -> DictionaryError) throws(DictionaryError) {
        let dataset = "/images/masks"
        guard version >= 2 else {
            throw fail(dataset, "raster masks need a version 2 dictionary (docs/1-dictionary.md); this one is version \(version)")
        }
        guard rasters.size == maskSize, rasters.conceptCount == concepts.count, rasters.imageCount == n else {
            throw fail(dataset, "holds \(rasters.imageCount) images × \(rasters.conceptCount) concepts of \(rasters.size)×\(rasters.size) masks; expected \(n) × \(concepts.count) of \(maskSize)×\(maskSize)")
        }
        for image in 0..<n {
            for c in 0..<concepts.count {
                let runs = rasters.runs(image: image, concept: c)
                guard let first = runs.first else { continue }
                let label = localLabel(image: image, concept: c)
                guard label == 1 else {
                    let pixels = rasters.area(image: image, concept: c)
                    throw fail(dataset, "\(imageName(image)), concept \(c) (\(concepts[c])): \(pixels) pixel\(pixels == 1 ? "" : "s") set where local_label is \(label); only a present concept (label 1) may have mask pixels")
                }
                var previous = first
                for (i, run) in zip(runs.indices, runs) {
                    let ordered = i == runs.startIndex || run.row > previous.row || (run.row == previous.row && run.lo >= previous.hi)
                    guard Int(run.row) < maskSize, run.lo < run.hi, Int(run.hi) <= maskSize, ordered else {
                        throw fail(dataset, "\(imageName(image)), concept \(c) (\(concepts[c])): run of row \(run.row), columns \(run.lo)..<\(run.hi), is outside the \(maskSize)×\(maskSize) grid or out of order")
                    }
                    previous = run
                }
            }
        }
    }
}
