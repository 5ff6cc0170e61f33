import Dispatch

/// The three stages of docs/3-numbers.md, evaluated over the images seen so far.
extension LayerAccumulator {
    /// The dissection over the images seen so far (complete once every image arrived).
    public func snapshot() -> LayerSnapshot { snapshotWithRawPValues().snapshot }

    /// The snapshot and, when complete, the raw p-values its adjusted ones come from (partial
    /// snapshots skip the tests: nil, and NaN p-values in the snapshot).
    public func snapshotWithRawPValues() -> (snapshot: LayerSnapshot, raw: RawPValues?) {
        let (snapshot, raw, _) = timedSnapshot()
        return (snapshot, raw)
    }

    /// `snapshotWithRawPValues`, with the wall-clock seconds of each of its phases: what limits a
    /// snapshot's latency, reported by the daemon's log and `hndd dissect` on every pass rather
    /// than found again with a profiler.
    public func timedSnapshot() -> (snapshot: LayerSnapshot, raw: RawPValues?, phases: SnapshotPhases) {
        var clock = SnapshotPhases.Stopwatch()
        var phases = SnapshotPhases()
        let dictionary = index.dictionary
        let g = dictionary.subgroupCount, l = dictionary.conceptCount, k = options.topImages
        var snap = LayerSnapshot(layer: layer, imagesSeen: imagesSeen, imagesTotal: index.imageCount,
                                 units: units, subgroupCount: g, conceptCount: l, topImageCount: k)
        guard units > 0 else { return (snap, nil, phases) }
        let sets = SeenSets(self)
        let tested = snap.complete
        var raw = RawPValues(global: .init(repeating: .nan, count: tested ? units * g : 0),
                             local: .init(repeating: .nan, count: tested ? units * l : 0))
        let nullSets = tested ? NullSets(sets, index: index) : nil
        let change = tested ? ChangeTestOutput(self) : nil
        phases.sets = clock.lap()
        let thresholds = stageTwoThresholds()
        phases.thresholds = clock.lap()
        let counts = stageTwoCounts(thresholds: thresholds)
        phases.counts = clock.lap()
        let out = SnapshotBuffers(snap, raw: raw, nullSets: nullSets, change: change)
        DispatchQueue.concurrentPerform(iterations: units) { u in
            dissect(unit: u, sets: sets, threshold: thresholds[u], counts: counts, into: out)
        }
        out.finish(into: &snap, raw: &raw)
        phases.units = clock.lap()
        guard tested else { return (snap, nil, phases) }
        Self.applyFalseDiscovery(raw, to: &snap)
        change?.apply(to: &snap)
        phases.tests = clock.lap()
        return (snap, raw, phases)
    }

    /// One unit through Stages II, I and III (Stage III needs Stage II's region and IoU), then
    /// its top images.
    func dissect(unit u: Int, sets: SeenSets, threshold t: Float, counts: [Int64], into out: SnapshotBuffers) {
        maxima.withUnsafeBufferPointer { maximaBuffer in
            let column = maximaBuffer.baseAddress! + u * index.imageCount
            var scratch: [UInt64] = []
            let iou = stageTwo(unit: u, threshold: t, counts: counts, into: out)
            stageOne(unit: u, column: column, sets: sets, scratch: &scratch, into: out)
            stageThree(unit: u, column: column, sets: sets, iou: iou, scratch: &scratch, into: out)
            topImages(unit: u, column: column, sets: sets, into: out)
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

    init(_ layer: LayerAccumulator) { self.init(index: layer.index, seen: layer.seen) }

    /// The sets over the images `seen` marks (all of them: those of a complete pass).
    init(index: DictionaryIndex, seen: [Bool]) {
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
