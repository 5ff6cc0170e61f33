import Dispatch

/// The three stages of SPEC §3, evaluated over the images seen so far.
extension LayerAccumulator {
    /// The dissection over the images seen so far (complete once every image arrived).
    public func snapshot() -> LayerSnapshot {
        let dictionary = index.dictionary
        let g = dictionary.subgroupCount, l = dictionary.conceptCount, k = options.topImages
        var snap = LayerSnapshot(layer: layer, imagesSeen: imagesSeen, imagesTotal: index.imageCount,
                                 units: units, subgroupCount: g, conceptCount: l, topImageCount: k)
        guard units > 0 else { return snap }
        let sets = SeenSets(self)
        let pendingGrids = pendingImages.isEmpty ? [] : rasterizedPendingImages()

        snap.threshold.withUnsafeMutableBufferPointer { threshold in
        snap.globalProb.withUnsafeMutableBufferPointer { globalProb in
        snap.globalBiased.withUnsafeMutableBufferPointer { globalBiased in
        snap.iou.withUnsafeMutableBufferPointer { iou in
        snap.region.withUnsafeMutableBufferPointer { region in
        snap.localProb.withUnsafeMutableBufferPointer { localProb in
        snap.localPaired.withUnsafeMutableBufferPointer { localPaired in
        snap.netdissectConcept.withUnsafeMutableBufferPointer { netdissect in
        snap.topImages.withUnsafeMutableBufferPointer { topImages in
            let out = UnsafeSendable(SnapshotOutput(
                threshold: threshold, globalProb: globalProb, globalBiased: globalBiased, iou: iou,
                region: region, localProb: localProb, localPaired: localPaired,
                netdissect: netdissect, topImages: topImages))
            DispatchQueue.concurrentPerform(iterations: units) { u in
                dissect(unit: u, sets: sets, pendingGrids: pendingGrids, into: out.value)
            }
        }}}}}}}}}
        return snap
    }

    /// One unit through Stages II, I and III.
    func dissect(unit u: Int, sets: SeenSets, pendingGrids: [UInt64], into out: SnapshotOutput) {
        let dictionary = index.dictionary
        let g = dictionary.subgroupCount, l = dictionary.conceptCount, n = index.imageCount
        maxima.withUnsafeBufferPointer { maximaBuffer in
            let column = maximaBuffer.baseAddress! + u * n
            var scratch: [Int32] = []

            // Stage II: threshold, IoU, region and the Network Dissection label.
            let population = localImagesSeen * mapSize
            var iou = [Double](repeating: 0, count: l)
            if population > 0 {
                let rule = self.rule
                let top = topValues[u].largest(rule.valuesNeeded(population: population))
                let t = rule.value(population: population, largestDescending: top)!
                out.threshold[u] = t
                let counts = tailCounts(unit: u, threshold: t, pendingGrids: pendingGrids)
                for c in 0..<l {
                    let intersection = counts[index.countRows + c]
                    var activation = 0.0
                    for row in index.countRowsOfConcept[c] { activation += counts[row] }
                    let union = activation + maskAreaSeen[c] - intersection
                    iou[c] = union > 0 ? intersection / union : 0
                    out.iou[u * l + c] = Float(iou[c])
                }
                var best = 0
                for c in 1..<l where iou[c] > iou[best] { best = c }
                if iou[best] >= options.iouFloor {
                    out.region[u] = dictionary.conceptRegion[best]
                    out.netdissect[u] = Int32(best)
                }
            }

            // Stage I: rank-weighted scores per global category over D_g.
            let perCategory = sets.subgroupsPerCategory
            for (category, members) in sets.categoryImages.enumerated() {
                guard let (lo, hi) = RankedScores.range(of: column, at: members), hi > lo else { continue }
                let labels = sets.categoryLabels[category]
                var score = [Double](repeating: 0, count: g)
                let span = Double(hi) - Double(lo)
                RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
                    let normalised = (Double(column[Int(members[position])]) - Double(lo)) / span
                    score[Int(labels[position])] += rank * normalised
                }
                var total = 0.0
                for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
                    score[s] = sets.subgroupCounts[s] > 0 ? score[s] / Double(sets.subgroupCounts[s]) : 0
                    total += score[s]
                }
                for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
                    let p = total > 0 ? score[s] / total : 0
                    out.globalProb[u * g + s] = Float(p)
                    out.globalBiased[u * g + s] = StageRules.isBiased(p, subgroups: perCategory[category]) ? 1 : 0
                }
            }

            // Stage III: local concepts of the unit's region, over D_r, normalised over D_L.
            let r = Int(out.region[u])
            if r >= 0, let (lo, hi) = RankedScores.range(of: column, at: sets.localImages), hi > lo {
                let members = sets.regionImages[r]
                let regionMask = index.regionConcepts[r]
                var score = [Double](repeating: 0, count: l)
                let span = Double(hi) - Double(lo)
                RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
                    let image = Int(members[position])
                    let weighted = rank * (Double(column[image]) - Double(lo)) / span
                    var bits = index.presentConcepts[image] & regionMask
                    while bits != 0 {
                        score[bits.trailingZeroBitCount] += weighted
                        bits &= bits - 1
                    }
                }
                var total = 0.0
                var concepts = regionMask
                while concepts != 0 {
                    let c = concepts.trailingZeroBitCount
                    score[c] = sets.presentCounts[c] > 0 ? score[c] / Double(sets.presentCounts[c]) * iou[c] : 0
                    total += score[c]
                    concepts &= concepts - 1
                }
                let regionSize = regionMask.nonzeroBitCount
                concepts = regionMask
                while concepts != 0 {
                    let c = concepts.trailingZeroBitCount
                    let p = total > 0 ? score[c] / total : 0
                    out.localProb[u * l + c] = Float(p)
                    out.localPaired[u * l + c] = StageRules.isPaired(p, conceptsInRegion: regionSize) ? 1 : 0
                    concepts &= concepts - 1
                }
            }

            // The images this unit responds to most, for the report.
            let k = options.topImages
            if k > 0 {
                var best: [(value: Float, image: Int32)] = []
                for image in sets.allImages {
                    let v = column[Int(image)]
                    if best.count == k, v <= best[k - 1].value { continue }
                    let at = best.firstIndex { v > $0.value } ?? best.count
                    best.insert((v, image), at: at)
                    if best.count > k { best.removeLast() }
                }
                for (i, entry) in best.enumerated() { out.topImages[u * k + i] = Int64(entry.image) }
            }
        }
    }

    /// Per histogram row, the pixels above `threshold`: from the unit's histogram once warm,
    /// else from the maps still pending (recorded on the fly, with the threshold as floor).
    func tailCounts(unit u: Int, threshold: Float, pendingGrids: [UInt64]) -> [Double] {
        if pendingImages.isEmpty { return histograms[u].countsAbove(threshold) }
        var histogram = TailHistogram(rows: index.histogramRows)
        let hw = mapSize, s2 = index.dictionary.maskSize * index.dictionary.maskSize
        let countRows = index.countRows
        pendingMaps.withUnsafeBufferPointer { maps in
            for (i, image) in pendingImages.enumerated() {
                let map = maps.baseAddress! + (i * units + u) * hw
                let countBits = index.countRowsOfImage[Int(image)]
                histogram.withRecorder { recorder in
                    upsampler!.forEachPixel(of: map, above: threshold) { pixel, v in
                        recorder.count(v, countBits: countBits, conceptBits: pendingGrids[i * s2 + pixel], countRows: countRows)
                    }
                }
            }
        }
        return histogram.countsAbove(threshold)
    }

    func rasterizedPendingImages() -> [UInt64] {
        let s2 = index.dictionary.maskSize * index.dictionary.maskSize
        var grids = [UInt64](repeating: 0, count: pendingImages.count * s2)
        grids.withUnsafeMutableBufferPointer { grids in
            for (i, image) in pendingImages.enumerated() {
                index.dictionary.rasterizeConcepts(
                    image: Int(image), into: UnsafeMutableBufferPointer(rebasing: grids[(i * s2)..<((i + 1) * s2)]))
            }
        }
        return grids
    }
}

/// The decision rules of SPEC §3, in one place.
public enum StageRules {
    /// Stage I: biased toward a subgroup iff P ≥ 1/S_g + 0.05.
    public static func isBiased(_ p: Double, subgroups: Int) -> Bool { p >= 1 / Double(subgroups) + 0.05 }
    /// Stage III: paired with a concept iff P > 1.5/K_r.
    public static func isPaired(_ p: Double, conceptsInRegion: Int) -> Bool { p > 1.5 / Double(conceptsInRegion) }
}

/// The image sets of SPEC §3 restricted to the images seen so far; computed once per snapshot.
struct SeenSets: Sendable {
    let allImages: [Int32]
    let localImages: [Int32]
    let categoryImages: [[Int32]]
    let categoryLabels: [[Int32]]
    let subgroupCounts: [Int]
    let regionImages: [[Int32]]
    /// N_c over seen images.
    let presentCounts: [Int]
    /// S_g of each category, from the taxonomy.
    let subgroupsPerCategory: [Int]

    init(_ layer: LayerAccumulator) {
        let index = layer.index, seen = layer.seen
        allImages = (0..<index.imageCount).filter { seen[$0] }.map(Int32.init)
        localImages = allImages.filter { index.inLocalSet[Int($0)] }
        var counts = [Int](repeating: 0, count: index.dictionary.subgroupCount)
        var images = [[Int32]](), labels = [[Int32]]()
        for members in index.categoryMembers {
            let kept = members.filter { seen[Int($0.image)] }
            images.append(kept.map(\.image))
            labels.append(kept.map(\.subgroup))
            for m in kept { counts[Int(m.subgroup)] += 1 }
        }
        categoryImages = images
        categoryLabels = labels
        subgroupCounts = counts
        regionImages = index.regionMembers.map { $0.filter { seen[Int($0)] } }
        var present = [Int](repeating: 0, count: index.conceptCount)
        for image in localImages {
            var bits = index.presentConcepts[Int(image)]
            while bits != 0 { present[bits.trailingZeroBitCount] += 1; bits &= bits - 1 }
        }
        presentCounts = present
        subgroupsPerCategory = index.dictionary.subgroupsPerCategory
    }
}

/// Where one unit's results go: disjoint slices of the snapshot's arrays.
struct SnapshotOutput {
    let threshold: UnsafeMutableBufferPointer<Float>
    let globalProb: UnsafeMutableBufferPointer<Float>
    let globalBiased: UnsafeMutableBufferPointer<UInt8>
    let iou: UnsafeMutableBufferPointer<Float>
    let region: UnsafeMutableBufferPointer<Int32>
    let localProb: UnsafeMutableBufferPointer<Float>
    let localPaired: UnsafeMutableBufferPointer<UInt8>
    let netdissect: UnsafeMutableBufferPointer<Int32>
    let topImages: UnsafeMutableBufferPointer<Int64>
}
