import Dispatch

/// The three stages of docs/3-numbers.md, evaluated over the images seen so far.
extension LayerAccumulator {
    /// The dissection over the images seen so far (complete once every image arrived).
    public func snapshot() -> LayerSnapshot { snapshotWithRawPValues().snapshot }

    /// The snapshot and, when complete, the raw p-values its adjusted ones come from (partial
    /// snapshots skip the tests: nil, and NaN p-values in the snapshot).
    public func snapshotWithRawPValues() -> (snapshot: LayerSnapshot, raw: RawPValues?) {
        let dictionary = index.dictionary
        let g = dictionary.subgroupCount, l = dictionary.conceptCount, k = options.topImages
        var snap = LayerSnapshot(layer: layer, imagesSeen: imagesSeen, imagesTotal: index.imageCount,
                                 units: units, subgroupCount: g, conceptCount: l, topImageCount: k)
        guard units > 0 else { return (snap, nil) }
        let sets = SeenSets(self)
        let tested = snap.complete
        var raw = RawPValues(global: .init(repeating: .nan, count: tested ? units * g : 0),
                             local: .init(repeating: .nan, count: tested ? units * l : 0))
        let nullSets = tested ? NullSets(sets, index: index) : nil
        let change = tested ? ChangeTestOutput(self) : nil
        let thresholds = stageTwoThresholds()
        let counts = stageTwoCounts(thresholds: thresholds)

        snap.threshold.withUnsafeMutableBufferPointer { threshold in
        snap.globalProb.withUnsafeMutableBufferPointer { globalProb in
        snap.globalBiased.withUnsafeMutableBufferPointer { globalBiased in
        snap.iou.withUnsafeMutableBufferPointer { iou in
        snap.region.withUnsafeMutableBufferPointer { region in
        snap.localProb.withUnsafeMutableBufferPointer { localProb in
        snap.localPaired.withUnsafeMutableBufferPointer { localPaired in
        snap.netdissectConcept.withUnsafeMutableBufferPointer { netdissect in
        snap.topImages.withUnsafeMutableBufferPointer { topImages in
        raw.global.withUnsafeMutableBufferPointer { rawGlobal in
        raw.local.withUnsafeMutableBufferPointer { rawLocal in
            let out = UnsafeSendable(SnapshotOutput(
                threshold: threshold, globalProb: globalProb, globalBiased: globalBiased, iou: iou,
                region: region, localProb: localProb, localPaired: localPaired,
                netdissect: netdissect, topImages: topImages,
                significance: nullSets.map { SignificanceOutput(sets: $0, global: rawGlobal, local: rawLocal, change: change) }))
            DispatchQueue.concurrentPerform(iterations: units) { u in
                dissect(unit: u, sets: sets, threshold: thresholds[u], counts: counts, into: out.value)
            }
        }}}}}}}}}}}
        guard tested else { return (snap, nil) }
        Self.applyFalseDiscovery(raw, to: &snap)
        change?.apply(to: &snap)
        return (snap, raw)
    }

    /// One unit through Stages II, I and III.
    func dissect(unit u: Int, sets: SeenSets, threshold t: Float, counts: [Int64], into out: SnapshotOutput) {
        let dictionary = index.dictionary
        let g = dictionary.subgroupCount, l = dictionary.conceptCount, n = index.imageCount
        maxima.withUnsafeBufferPointer { maximaBuffer in
            let column = maximaBuffer.baseAddress! + u * n
            var scratch: [UInt64] = []

            // Stage II: threshold, IoU, region and the Network Dissection label.
            var iou = [Double](repeating: 0, count: l)
            if localImagesSeen > 0 {
                out.threshold[u] = t
                let counts = counts[(u * index.stageTwoRows)...]
                let first = counts.startIndex
                for c in 0..<l {
                    let intersection = Double(counts[first + index.countRows + c])
                    var activation = 0.0
                    for row in index.countRowsOfConcept[c] { activation += Double(counts[first + row]) }
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

            // Stage I: rank-weighted scores per global category over D_g. Categories usually
            // label the same images: those share one ranking.
            let perCategory = sets.subgroupsPerCategory
            var ranks: [Double] = [], ranked = -1, baselineRanks = BaselineRanks()
            for (category, members) in sets.categoryImages.enumerated() {
                guard let (lo, hi) = RankedScores.range(of: column, at: members), hi > lo else { continue }
                let labels = sets.categoryLabels[category]
                var score = [Double](repeating: 0, count: g)
                let span = Double(hi) - Double(lo)
                if ranked != sets.sameImagesAs[category] {
                    if ranks.count < members.count { ranks = [Double](repeating: 0, count: members.count) }
                    RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
                        ranks[position] = rank
                    }
                    ranked = sets.sameImagesAs[category]
                }
                var weights = PermutationNull.Weights()
                for position in members.indices {
                    let normalised = (Double(column[Int(members[position])]) - Double(lo)) / span
                    let w = ranks[position] * normalised
                    score[Int(labels[position])] += w
                    weights.add(w)
                }
                var total = 0.0
                for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
                    score[s] = sets.subgroupCounts[s] > 0 ? score[s] / Double(sets.subgroupCounts[s]) : 0
                    total += score[s]
                }
                for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
                    let p = total > 0 ? score[s] / total : 0
                    score[s] = p
                    out.globalProb[u * g + s] = Float(p)
                    out.globalBiased[u * g + s] = StageRules.isBiased(p, subgroups: perCategory[category]) ? 1 : 0
                }
                if let tests = out.significance, total > 0 {
                    testStageOne(unit: u, category: category, counts: sets.subgroupCounts, weights: weights,
                                 probabilities: score, into: tests)
                    if let change = tests.change {
                        testChange(unit: u, category: category, sets: sets, into: change, cache: &baselineRanks,
                                   now: StageOneColumn(column: column, ranks: ranks, lo: lo, hi: hi, total: total, probabilities: score))
                    }
                }
            }

            // Stage III: local concepts of the unit's region, over D_r, normalised over D_L.
            let r = Int(out.region[u])
            if r >= 0, let (lo, hi) = RankedScores.range(of: column, at: sets.localImages), hi > lo {
                let members = sets.regionImages[r]
                let regionMask = index.regionConcepts[r]
                var score = [Double](repeating: 0, count: l)
                let span = Double(hi) - Double(lo)
                var weights = PermutationNull.Weights()
                RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
                    let image = Int(members[position])
                    let weighted = rank * (Double(column[image]) - Double(lo)) / span
                    weights.add(weighted)
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
                    score[c] = p
                    concepts &= concepts - 1
                }
                if let tests = out.significance, total > 0 {
                    testStageThree(unit: u, region: r, iou: iou, counts: sets.presentCounts, weights: weights,
                                   probabilities: score, into: tests)
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

    /// T_u of every unit over the local-set images seen (NaN before the first).
    func stageTwoThresholds() -> [Float] {
        let population = localImagesSeen * mapSize
        var thresholds = [Float](repeating: .nan, count: units)
        guard population > 0 else { return thresholds }
        let rule = self.rule
        thresholds.withUnsafeMutableBufferPointer { out in
            let out = UnsafeSendable(out.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: units) { u in
                out.value[u] = topValues[u].quantile(rule, population: population)!
            }
        }
        return thresholds
    }

    /// Stage II's counts at the thresholds, [C, stageTwoRows]: per unit, |M| summed per count
    /// row (annotation pattern), then Σ|M ∩ L_c| per concept, exactly, over the candidate maps.
    /// Maps not kept never exceed the threshold. Workers count the stores' pieces, each into the
    /// rows of its store's units. Maps are counted by the AVX-512 kernel where the CPU has it (and
    /// `useKernel`), else in Swift.
    func stageTwoCounts(thresholds: [Float], useKernel: Bool = true) -> [Int64] {
        let rows = index.stageTwoRows, countRows = index.countRows
        var counts = [Int64](repeating: 0, count: units * rows)
        guard let upsampler, localImagesSeen > 0 else { return counts }
        // Held here, so that its calls (which hold no reference) stay valid.
        let kernelOwner = useKernel ? countKernel : nil, kernel = kernelOwner?.calls
        defer { withExtendedLifetime(kernelOwner) {} }
        let spans = index.spans
        // Raw pointers into everything the loop reads: no reference counting per map.
        counts.withUnsafeMutableBufferPointer { counts in
        thresholds.withUnsafeBufferPointer { thresholds in
        index.countRowsOfImage.withUnsafeBufferPointer { countRowsOfImage in
        spans.maskStart.withUnsafeBufferPointer { maskStart in
        spans.masks.withUnsafeBufferPointer { masks in
        spans.runLo.withUnsafeBufferPointer { runLo in
        spans.runHi.withUnsafeBufferPointer { runHi in
            let counts = UnsafeSendable(counts.baseAddress!), thresholds = UnsafeSendable(thresholds.baseAddress!)
            let countRowsOfImage = UnsafeSendable(countRowsOfImage.baseAddress!), maskStart = UnsafeSendable(maskStart.baseAddress!)
            let masks = UnsafeSendable(masks.baseAddress!), runLo = UnsafeSendable(runLo), runHi = UnsafeSendable(runHi)
            // Pieces of every store, each counted into its own rows (the store's units), then added
            // up: many more tasks than workers, so that none counts alone at the end.
            let tasks = candidates.indices.flatMap { s in candidates[s].pieces.map { (store: s, piece: $0) } }
            var taskCounts = [[Int64]](repeating: [], count: tasks.count)
            taskCounts.withUnsafeMutableBufferPointer { taskCounts in
                let taskCounts = UnsafeSendable(taskCounts.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: tasks.count) { task in
                    let (s, piece) = tasks[task]
                    let store = candidates[s], words = store.wordsPerMap, firstUnit = shardUnits(s).lowerBound
                    var mine = [Int64](repeating: 0, count: shardUnits(s).count * rows)
                    // One map's block runs (the Swift path), gathered before the concept masks
                    // are visited once each.
                    var chunks: [BlockRunChunk] = []
                    chunks.reserveCapacity(64)
                    mine.withUnsafeMutableBufferPointer { mine in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: mapSize) { dense in
                    withUnsafeTemporaryAllocation(of: Int64.self, capacity: max(1, spans.maxMasksPerImage)) { overlap in
                        let mine = mine.baseAddress!, dense = dense.baseAddress!, overlap = overlap.baseAddress!
                        store.forEach(in: piece) { record in
                            let u = Int(record.unit), t = thresholds.value[u]
                            guard record.peak > t else { return }
                            let image = Int(record.image)
                            let first = maskStart.value[image], maskCount = maskStart.value[image + 1] - first
                            let imageMasks = masks.value + first
                            overlap.initialize(repeating: 0, count: maskCount)
                            let area: Int
                            if let kernel {
                                area = kernel.count(kept: record.keptWords, values: record.values(words: words), threshold: t, image: image,
                                                    masks: imageMasks, runLo: runLo.value.baseAddress!, runHi: runHi.value.baseAddress!,
                                                    overlap: overlap)
                            } else {
                                store.expand(record, into: dense)
                                area = Self.countBlockRuns(of: dense, above: t, upsampler: upsampler, masks: imageMasks,
                                                           maskCount: maskCount, runLo: runLo.value, runHi: runHi.value,
                                                           overlap: overlap, chunks: &chunks)
                            }
                            guard area > 0 else { return }
                            let unitCounts = mine + (u - firstUnit) * rows
                            var bits = countRowsOfImage.value[image]
                            while bits != 0 { unitCounts[bits.trailingZeroBitCount] += Int64(area); bits &= bits - 1 }
                            // A concept's pieces are disjoint: their overlaps add up to the concept's.
                            for m in 0..<maskCount { unitCounts[countRows + Int(imageMasks[m].concept)] += overlap[m] }
                        }
                    }}}
                    taskCounts.value[task] = mine
                }
            }
            for (task, (s, _)) in tasks.enumerated() {
                let offset = shardUnits(s).lowerBound * rows
                for (i, n) in taskCounts[task].enumerated() { counts.value[offset + i] += n }
            }
        }}}}}}}
        return counts
    }

    /// The Swift count of one map: returns |M| at `t` and adds |M ∩ masks[m]| to `overlap[m]`.
    /// `chunks` is scratch.
    static func countBlockRuns(of dense: UnsafePointer<Float>, above t: Float, upsampler: BilinearUpsampler,
                               masks: UnsafePointer<ConceptSpans.Mask>, maskCount: Int,
                               runLo: UnsafeBufferPointer<UInt16>, runHi: UnsafeBufferPointer<UInt16>,
                               overlap: UnsafeMutablePointer<Int64>, chunks: inout [BlockRunChunk]) -> Int {
        chunks.removeAll(keepingCapacity: true)
        var area = 0
        var rowLo = Int.max, rowHi = 0, columnLo = Int.max, columnHi = 0
        upsampler.forEachBlockRun(of: dense, above: t) { firstRow, rowCount, lo, hi, columns in
            let length = hi - lo
            let withRun = BilinearUpsampler.laneBits(length .> 0) & ((1 << UInt64(rowCount)) - 1)
            guard withRun != 0 else { return }
            area += Int(BilinearUpsampler.sum(BilinearUpsampler.firstLanes(rowCount, of: length)))
            let chunk = BlockRunChunk(firstRow: firstRow + withRun.trailingZeroBitCount,
                                      endRow: firstRow + 64 - withRun.leadingZeroBitCount,
                                      laneOffset: firstRow, columns: columns, lo: lo, hi: hi)
            rowLo = min(rowLo, chunk.firstRow); rowHi = max(rowHi, chunk.endRow)
            columnLo = min(columnLo, columns.lowerBound); columnHi = max(columnHi, columns.upperBound)
            chunks.append(chunk)
        }
        guard area > 0 else { return 0 }
        for m in 0..<maskCount {
            let mask = masks[m]
            let maskFirst = Int(mask.firstRow), maskEnd = maskFirst + Int(mask.rowCount)
            if maskEnd <= rowLo || maskFirst >= rowHi || Int(mask.columnHi) <= columnLo || Int(mask.columnLo) >= columnHi { continue }
            var sum = 0
            for chunk in chunks {
                if Int(mask.columnHi) <= chunk.columns.lowerBound || Int(mask.columnLo) >= chunk.columns.upperBound { continue }
                for row in max(chunk.firstRow, maskFirst)..<max(max(chunk.firstRow, maskFirst), min(chunk.endRow, maskEnd)) {
                    let r = Int(mask.runStart) + row - maskFirst, lane = row - chunk.laneOffset
                    let a = max(Int(chunk.lo[lane]), Int(runLo[r])), b = min(Int(chunk.hi[lane]), Int(runHi[r]))
                    if b > a { sum += b - a }
                }
            }
            overlap[m] += Int64(sum)
        }
        return area
    }
}

/// Up to 16 rows of one block's runs above the threshold (see `forEachBlockRun`): rows
/// firstRow..<endRow hold runs; row r's is lo[r − laneOffset] ..< hi[r − laneOffset].
struct BlockRunChunk {
    let firstRow: Int, endRow: Int, laneOffset: Int
    let columns: Range<Int>
    let lo: BilinearUpsampler.Lanes, hi: BilinearUpsampler.Lanes
}

/// The decision rules of docs/3-numbers.md, in one place.
public enum StageRules {
    /// Stage I: biased toward a subgroup iff P ≥ 1/S_g + 0.05.
    public static func isBiased(_ p: Double, subgroups: Int) -> Bool { p >= biasThreshold(subgroups: subgroups) }
    /// Stage I's cut, 1/S_g + 0.05, for S_g subgroups in the category.
    public static func biasThreshold(subgroups: Int) -> Double { 1 / Double(subgroups) + 0.05 }
    /// Stage III: paired with a concept iff P > 1.5/K_r.
    public static func isPaired(_ p: Double, conceptsInRegion: Int) -> Bool { p > 1.5 / Double(conceptsInRegion) }
}

/// The image sets of docs/3-numbers.md restricted to the images seen so far; computed once per snapshot.
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
    /// For each category, the first category whose images (in the same order) it shares.
    let sameImagesAs: [Int]

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
        sameImagesAs = images.indices.map { g in images.firstIndex(of: images[g])! }
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
    /// Where the raw p-values go; nil when the snapshot skips the tests (a partial pass).
    let significance: SignificanceOutput?
}
