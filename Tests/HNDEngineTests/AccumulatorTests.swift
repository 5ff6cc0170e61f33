import HNDTestSupport
import CHNDCPU
import Testing
@testable import HNDEngine

/// A random dictionary and layer with real structure, for invariance tests.
struct RandomCase {
    var dictionary: FaceDictionary
    let maps: [Float] // [N, C, h, w]
    let units: Int, h: Int, w: Int

    /// `rasters`: a version-2 dictionary whose masks are `RasterShapes` drawn around the ellipses.
    /// `halves`: every value a float16 (rounded to one), as a layer sent in float16 gives them.
    init(images n: Int, units: Int, h: Int, w: Int, seed: UInt64, maskSize: Int = 24, rasters: Bool = false, halves: Bool = false) {
        var g = SplitMix(seed: seed)
        let l = 6
        var local = [Int8](), ellipse = [Float](), global = [Int32]()
        for image in 0..<n {
            global += [Int32(g.next() % 2), image % 5 == 0 ? -1 : Int32(2 + g.next() % 3)]
            for c in 0..<l {
                let label: Int8 = image % 7 == 0 ? -1 : (g.next() % 3 == 0 ? 0 : 1)
                local.append(c == 5 && label == 1 ? 0 : label) // concept 5: nobody has it
                let cx = 0.2 + 0.12 * Float(c) + g.uniform() * 0.05, cy = 0.3 + g.uniform() * 0.4
                ellipse += [cx, cy, 0.004 + g.uniform() * 0.004, 0.001, 0.004 + g.uniform() * 0.004]
            }
        }
        dictionary = FaceDictionary(
            categories: ["gender", "age"], subgroups: ["f", "m", "young", "mid", "old"], subgroupCategory: [0, 0, 1, 1, 1],
            regions: ["eye", "mouth"], concepts: ["a", "b", "c", "d", "e", "nobody"], conceptRegion: [0, 0, 0, 1, 1, 1],
            conceptType: [0, 1, 2, 0, 1, 2], globalLabel: global, localLabel: local, ellipse: ellipse, maskSize: maskSize)
        if rasters { dictionary = RasterShapes.drawn(over: dictionary) }
        self.units = units; self.h = h; self.w = w
        let values = (0..<(n * units * h * w)).map { _ in g.uniform() * 3 - 1 }
        maps = halves ? values.map { Float(Float16($0)) } : values
    }

    func feed(_ layer: inout LayerAccumulator, order: [Int], batch: Int) throws {
        let size = units * h * w
        for start in stride(from: 0, to: order.count, by: batch) {
            let ids = order[start..<min(start + batch, order.count)]
            var values: [Float] = []
            for id in ids { values += maps[(id * size)..<((id + 1) * size)] }
            try values.withUnsafeBufferPointer { v throws(BatchError) in
                try layer.add(imageIDs: ids.map(Int64.init), units: units, height: h, width: w, values: v)
            }
        }
    }
}

@Suite struct AccumulatorTests {
    @Test func orderAndBatchingDoNotChangeTheSnapshot() throws {
        let random = RandomCase(images: 300, units: 5, h: 3, w: 4, seed: 1)
        let index = DictionaryIndex(random.dictionary)
        var inOrder = LayerAccumulator(layer: "l", index: index)
        try random.feed(&inOrder, order: Array(0..<300), batch: 300)
        var shuffledOnes = LayerAccumulator(layer: "l", index: index)
        var g = SplitMix(seed: 3)
        try random.feed(&shuffledOnes, order: Array(0..<300).shuffled(using: &g), batch: 1)
        let a = inOrder.snapshot(), b = shuffledOnes.snapshot()
        #expect(a.complete && b.complete)
        #expect(a.threshold == b.threshold)
        #expect(a.globalProb == b.globalProb)
        #expect(a.region == b.region)
        for i in a.iou.indices { #expect(abs(a.iou[i] - b.iou[i]) < 1e-6) }
        #expect(a.topImages == b.topImages)
        // Concept 5 is present nowhere: IoU 0 for every unit.
        for u in 0..<5 { #expect(a.iou[u * 6 + 5] == 0) }
    }

    @Test(arguments: [0.05, 0.3])
    func sweepingCandidatesChangesNoNumber(quantile: Double) throws {
        // Sweeps after every batch against none at all. At q = 0.05 they drop maps; at q = 0.3 a
        // unit's bound stays put for several batches (its top-k fills slowly), so sweeps also
        // skip what the last one kept.
        let random = RandomCase(images: 120, units: 4, h: 5, w: 5, seed: 3)
        let index = DictionaryIndex(random.dictionary)
        var swept = LayerAccumulator(layer: "l", index: index, options: .init(quantile: quantile))
        swept.discardSlack = 0
        var unswept = LayerAccumulator(layer: "l", index: index, options: .init(quantile: quantile))
        unswept.discardSlack = .max / 2
        try random.feed(&swept, order: Array(0..<120), batch: 6)
        try random.feed(&unswept, order: Array(0..<120), batch: 6)
        if quantile < 0.1 { #expect(swept.candidates.map(\.count).reduce(0, +) < unswept.candidates.map(\.count).reduce(0, +)) }
        let a = swept.snapshot(), b = unswept.snapshot()
        #expect(a.iou == b.iou && a.threshold == b.threshold && a.localProb == b.localProb)
        #expect(a.iou.contains { $0 > 0 })
    }

    @Test func countingInPiecesChangesNoNumber() throws {
        // Pieces of three maps: many pieces per store, counted by several workers at once, and
        // cut anew by the sweeps after every batch.
        let random = RandomCase(images: 120, units: 4, h: 5, w: 5, seed: 8)
        let index = DictionaryIndex(random.dictionary)
        var small = LayerAccumulator(layer: "l", index: index, options: .init(quantile: 0.05))
        small.recordsPerPiece = 3
        small.discardSlack = 0
        var whole = LayerAccumulator(layer: "l", index: index, options: .init(quantile: 0.05))
        try random.feed(&small, order: Array(0..<120), batch: 6)
        try random.feed(&whole, order: Array(0..<120), batch: 6)
        #expect(small.candidates.map(\.pieces.count).reduce(0, +) > 3 * small.candidates.count)
        #expect(whole.candidates.allSatisfy { $0.pieces.count == 1 })
        let t = small.stageTwoThresholds()
        let counts = small.stageTwoCounts(thresholds: t)
        #expect(counts == whole.stageTwoCounts(thresholds: t) && counts.contains { $0 > 0 })
        #expect(counts == small.stageTwoCounts(thresholds: t, useKernel: false))
    }

    @Test func partialSnapshotsMatchAFreshDissectionOfTheSameImages() throws {
        let random = RandomCase(images: 200, units: 3, h: 2, w: 2, seed: 2)
        let index = DictionaryIndex(random.dictionary)
        var g = SplitMix(seed: 8)
        let order = Array(0..<200).shuffled(using: &g)
        var streaming = LayerAccumulator(layer: "l", index: index)
        try random.feed(&streaming, order: Array(order.prefix(120)), batch: 7)
        let partial = streaming.snapshot()
        #expect(partial.imagesSeen == 120 && !partial.complete)
        // Same images in one batch: the snapshot is a function of the images seen, not the path.
        var direct = LayerAccumulator(layer: "l", index: index)
        try random.feed(&direct, order: Array(order.prefix(120)).sorted(), batch: 120)
        let expected = direct.snapshot()
        #expect(partial.threshold == expected.threshold)
        #expect(partial.globalProb == expected.globalProb)
        for i in partial.iou.indices { #expect(abs(partial.iou[i] - expected.iou[i]) < 0.01) }
    }

    @Test func malformedBatchesChangeNothing() throws {
        let random = RandomCase(images: 50, units: 2, h: 2, w: 2, seed: 3)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary))
        try random.feed(&layer, order: [0, 1, 2], batch: 3)
        let before = layer.snapshot()
        func attempt(_ ids: [Int64], _ values: [Float], units: Int = 2, h: Int = 2, w: Int = 2) -> BatchError? {
            do {
                try values.withUnsafeBufferPointer { v throws(BatchError) in
                    try layer.add(imageIDs: ids, units: units, height: h, width: w, values: v)
                }
                return nil
            } catch { return error }
        }
        #expect(attempt([4], [Float](repeating: 1, count: 12), units: 3) == .unitCountChanged(expected: 2, got: 3))
        #expect(attempt([4], [Float](repeating: 1, count: 8), h: 1, w: 4) == .mapSizeChanged(expected: (2, 2), got: (1, 4)))
        #expect(attempt([4], [Float](repeating: 1, count: 7)) == .valueCount(expected: 8, got: 7))
        #expect(attempt([50], [Float](repeating: 1, count: 8)) == .imageIDOutOfRange(position: 0, id: 50, imageCount: 50))
        #expect(attempt([-1], [Float](repeating: 1, count: 8)) == .imageIDOutOfRange(position: 0, id: -1, imageCount: 50))
        var nan = [Float](repeating: 1, count: 16); nan[13] = .nan
        let error = attempt([4, 5], nan)
        #expect(error == .nonFinite(imageID: 5, unit: 1, position: 1, value: .nan))
        var inf = [Float](repeating: 1, count: 8); inf[0] = -.infinity
        #expect(attempt([4], inf) == .nonFinite(imageID: 4, unit: 0, position: 0, value: -.infinity))
        let after = layer.snapshot()
        #expect(after.imagesSeen == 3 && before.threshold == after.threshold && before.globalProb == after.globalProb)
    }

    @Test func repeatedImagesCountOnce() throws {
        let random = RandomCase(images: 20, units: 1, h: 1, w: 1, seed: 4)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary))
        let outcome1 = try [Float(5), 6, 7].withUnsafeBufferPointer { v throws(BatchError) in
            try layer.add(imageIDs: [1, 2, 1], units: 1, height: 1, width: 1, values: v)
        }
        #expect(outcome1 == BatchOutcome(accepted: 2, duplicates: [1]))
        let outcome2 = try [Float(9)].withUnsafeBufferPointer { v throws(BatchError) in
            try layer.add(imageIDs: [2], units: 1, height: 1, width: 1, values: v)
        }
        #expect(outcome2.duplicates == [2])
        #expect(layer.imagesSeen == 2)
        #expect(layer.maxima[1] == 5 && layer.maxima[2] == 6) // first arrival wins
    }
}

@Suite struct StateTests {
    @Test func aRestoredStateContinuesExactly() throws {
        let random = RandomCase(images: 240, units: 4, h: 3, w: 3, seed: 6)
        let index = DictionaryIndex(random.dictionary)
        var g = SplitMix(seed: 12)
        let order = Array(0..<240).shuffled(using: &g)
        var whole = LayerAccumulator(layer: "l", index: index)
        try random.feed(&whole, order: order, batch: 16)

        for cut in [3, 100] { // before the top-k is full and after
            var first = LayerAccumulator(layer: "l", index: index)
            try random.feed(&first, order: Array(order.prefix(cut)), batch: 16)
            var resumed = try LayerAccumulator(decoding: first.encodedState(), index: index, options: first.options)
            #expect(resumed.encodedState() == first.encodedState())
            try random.feed(&resumed, order: Array(order.dropFirst(cut)), batch: 16)
            let a = resumed.snapshot(), b = whole.snapshot()
            #expect(a.threshold == b.threshold && a.globalProb == b.globalProb && a.region == b.region)
            #expect(a.iou == b.iou)
        }
    }

    @Test func corruptStatesAreRefused() throws {
        let random = RandomCase(images: 30, units: 2, h: 2, w: 2, seed: 7)
        let index = DictionaryIndex(random.dictionary)
        var layer = LayerAccumulator(layer: "l", index: index)
        try random.feed(&layer, order: Array(0..<30), batch: 10)
        let bytes = layer.encodedState()
        for cut in [0, 5, bytes.count / 2, bytes.count - 1] {
            #expect(throws: StateError.self) { try LayerAccumulator(decoding: Array(bytes.prefix(cut)), index: index, options: .init()) }
        }
        #expect(throws: StateError.self) { try LayerAccumulator(decoding: bytes, index: index, options: .init(quantile: 0.01)) }
    }
}

@Suite struct IoUTests {
    /// Stage II by brute force: every pixel of every upsampled map, every mask pixel.
    func bruteForceIoU(_ random: RandomCase, images: [Int], unit u: Int, quantile q: Double) -> (threshold: Float, iou: [Double]) {
        let d = random.dictionary, l = d.conceptCount, s = d.maskSize, hw = random.h * random.w
        let up = BilinearUpsampler(height: random.h, width: random.w, size: s)
        let index = DictionaryIndex(d)
        let local = images.filter { index.inLocalSet[$0] }
        var values: [Float] = []
        for n in local { values += random.maps[((n * random.units + u) * hw)..<((n * random.units + u + 1) * hw)] }
        let rule = QuantileRule(upperTail: q)
        let t = rule.value(population: values.count, largestDescending: values.sorted(by: >))!
        var inter = [Double](repeating: 0, count: l), act = [Double](repeating: 0, count: l), area = [Double](repeating: 0, count: l)
        random.maps.withUnsafeBufferPointer { maps in
            for n in local {
                let map = maps.baseAddress! + (n * random.units + u) * hw
                let masks = (0..<l).map { pixelMask(d, image: n, concept: $0) }
                for row in 0..<s {
                    for col in 0..<s {
                        let inM = up.value(map, row: row, col: col) > t
                        for c in 0..<l where d.localLabel(image: n, concept: c) >= 0 {
                            let inL = masks[c][row * s + col]
                            if inM { act[c] += 1 }
                            if inL { area[c] += 1 }
                            if inM && inL { inter[c] += 1 }
                        }
                    }
                }
            }
        }
        return (t, (0..<l).map { c in
            let union = act[c] + area[c] - inter[c]
            return union > 0 ? inter[c] / union : 0
        })
    }

    @Test(arguments: [10, 60, 150])
    func partialAndCompleteIoUMatchBruteForce(seen: Int) throws {
        // q = 0.3: with 10 images the top-k is not yet full and every map is a candidate.
        let random = RandomCase(images: 150, units: 3, h: 3, w: 3, seed: 21)
        let options = DissectionOptions(quantile: 0.3)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary), options: options)
        var g = SplitMix(seed: 5)
        let order = Array(Array(0..<150).shuffled(using: &g).prefix(seen))
        try random.feed(&layer, order: order, batch: 4)
        let snapshot = layer.snapshot()
        for u in 0..<3 {
            let expected = bruteForceIoU(random, images: order, unit: u, quantile: 0.3)
            #expect(snapshot.threshold[u] == expected.threshold)
            for c in 0..<random.dictionary.conceptCount {
                // Exact counts; only a pixel within float rounding of T could differ.
                #expect(abs(Double(snapshot.iou[u * 6 + c]) - expected.iou[c]) < 1e-4, "unit \(u) concept \(c)")
            }
        }
    }

    /// Maps of two words (10×10), swept after every batch, so that records are rewritten and some
    /// lose a stored word: the counts stay exact.
    @Test func wideMapsSweptAfterEveryBatchMatchBruteForce() throws {
        let random = RandomCase(images: 60, units: 2, h: 10, w: 10, seed: 31)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary), options: .init(quantile: 0.05))
        layer.discardSlack = 0
        try random.feed(&layer, order: Array(0..<60), batch: 4)
        let snapshot = layer.snapshot()
        #expect(snapshot.iou.contains { $0 > 0 })
        for u in 0..<2 {
            let expected = bruteForceIoU(random, images: Array(0..<60), unit: u, quantile: 0.05)
            #expect(snapshot.threshold[u] == expected.threshold)
            for c in 0..<random.dictionary.conceptCount {
                #expect(abs(Double(snapshot.iou[u * 6 + c]) - expected.iou[c]) < 1e-4, "unit \(u) concept \(c)")
            }
        }
    }

    /// Every count kernel (the process's, and each vector path's selected directly where the
    /// CPU has it: AVX-512 and AVX2 in one process) and the Swift path count the same pixels, on
    /// maps that upsample by whole, fractional and large factors, and with thresholds low and
    /// high; 70×66 maps are beyond 64×64 (the kernel's scratch on the heap), 30×30 at q = 0.3
    /// have hundreds of hot blocks a map (more than the kernel gathers at once).
    @Test(.enabled(if: !runnableCountPaths.isEmpty, "no count kernel runs on this CPU (no AVX2)"),
          arguments: [(3, 3, 24, 0.3), (7, 7, 112, 0.005), (7, 7, 112, 0.2), (14, 14, 112, 0.05), (5, 9, 37, 0.1), (2, 3, 100, 0.4),
                     (70, 66, 140, 0.002), (30, 30, 60, 0.3), (1, 1, 9, 0.3), (9, 1, 20, 0.1)])
    func kernelCountsEqualTheSwiftCounts(h: Int, w: Int, maskSize: Int, quantile: Double) throws {
        let random = RandomCase(images: 40, units: 5, h: h, w: w, seed: UInt64(h * 100 + w), maskSize: maskSize)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary), options: .init(quantile: quantile))
        try random.feed(&layer, order: Array(0..<40), batch: 8)
        let thresholds = layer.stageTwoThresholds()
        let swift = layer.stageTwoCounts(thresholds: thresholds, useKernel: false)
        #expect(swift.contains { $0 > 0 }, "the case counts some pixels")
        if CountKernel.isAvailable {
            #expect(layer.stageTwoCounts(thresholds: thresholds, useKernel: true) == swift, "the process's kernel (\(EngineKernels.path))")
        }
        for path in runnableCountPaths {
            layer.countKernel = CountKernel(layer.upsampler!, spans: layer.index.spans, path: path)
            #expect(layer.countKernel != nil)
            #expect(layer.stageTwoCounts(thresholds: thresholds, useKernel: true) == swift, "path \(path.rawValue)")
        }
    }
}

/// Stores of halves (maps all float16, as a layer sent in float16) count what the same stores
/// widened to floats count, with every count kernel and the Swift path.
@Test(.enabled(if: CandidateMaps.keepsHalves, "the portable path keeps floats"),
      arguments: [(3, 3, 24, 0.3), (7, 7, 112, 0.005), (14, 14, 112, 0.05), (70, 66, 140, 0.002), (9, 1, 20, 0.1)])
func countsOfStoresOfHalvesEqualThoseOfFloats(h: Int, w: Int, maskSize: Int, quantile: Double) throws {
    let random = RandomCase(images: 40, units: 5, h: h, w: w, seed: UInt64(h * 100 + w), maskSize: maskSize, halves: true)
    var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary), options: .init(quantile: quantile))
    try random.feed(&layer, order: Array(0..<40), batch: 8)
    #expect(layer.candidates.allSatisfy(\.halfValues) && layer.candidates.contains { $0.count > 0 })
    let thresholds = layer.stageTwoThresholds()
    var widened = layer
    widened.candidates = layer.candidates.map { $0.widened() }
    #expect(widened.candidates.allSatisfy { !$0.halfValues } && widened.candidates.map(\.count) == layer.candidates.map(\.count))
    let floats = widened.stageTwoCounts(thresholds: thresholds, useKernel: false)
    #expect(floats.contains { $0 > 0 }, "the case counts some pixels")
    #expect(layer.stageTwoCounts(thresholds: thresholds, useKernel: false) == floats, "the Swift path")
    for path in runnableCountPaths {
        layer.countKernel = CountKernel(layer.upsampler!, spans: layer.index.spans, path: path)
        #expect(layer.stageTwoCounts(thresholds: thresholds, useKernel: true) == floats, "path \(path.rawValue)")
    }
}

/// Mask (n, c) pixel by pixel, from docs/1-dictionary.md's definition: the raster's bits, else the ellipse
/// test at every pixel centre (not the row spans the engine computes).
func pixelMask(_ d: FaceDictionary, image n: Int, concept c: Int) -> [Bool] {
    let s = d.maskSize
    if let rasters = d.rasters { return rasters.bitmap(image: n, concept: c) }
    guard let ellipse = d.ellipseMask(image: n, concept: c), !ellipse.isEmpty else { return [Bool](repeating: false, count: s * s) }
    return (0..<(s * s)).map { ellipse.contains(row: $0 / s, col: $0 % s) }
}
