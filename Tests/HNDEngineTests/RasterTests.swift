import HNDTestSupport
import Testing
@testable import HNDEngine

/// Masks of any shape (docs/1-dictionary.md version 2): runs from packed bits, pieces, validation, and exact
/// counts on both code paths.
@Suite struct MaskRasterTests {
    /// Random bitmaps (sparse, dense, whole rows, the last column) survive packing and unpacking.
    @Test(arguments: [1, 7, 8, 9, 23, 64, 112])
    func packedRowsBecomeTheirRuns(size s: Int) {
        var g = SplitMix(seed: UInt64(s))
        var rasters = MaskRasters(size: s, conceptCount: 1)
        var bitmaps: [[Bool]] = []
        for density: Float in [0, 0.05, 0.5, 0.95, 1] {
            let bitmap = (0..<(s * s)).map { _ in g.uniform() < density }
            bitmaps.append(bitmap)
            let packed = RasterShapes.packed(bitmap, size: s)
            #expect(packed.withUnsafeBufferPointer { rasters.appendPacked($0.baseAddress!) })
        }
        for (n, bitmap) in bitmaps.enumerated() {
            #expect(rasters.bitmap(image: n, concept: 0) == bitmap)
            #expect(rasters.area(image: n, concept: 0) == bitmap.filter { $0 }.count)
            // Runs are maximal: no two touch in a row.
            let runs = Array(rasters.runs(image: n, concept: 0))
            for (a, b) in zip(runs, runs.dropFirst()) where a.row == b.row { #expect(a.hi < b.lo) }
        }
        #expect(rasters == MaskRasters(size: s, conceptCount: 1, bitmaps: bitmaps.flatMap { $0 }))
    }

    @Test func aSetPaddingBitIsRefused() {
        var rasters = MaskRasters(size: 10, conceptCount: 1)
        var packed = [UInt8](repeating: 0, count: 10 * 2)
        packed[0] = 0x80
        packed[7 * 2 + 1] = 0x20 // row 7, column 10: past the grid
        #expect(!packed.withUnsafeBufferPointer { rasters.appendPacked($0.baseAddress!) })
        #expect(rasters.imageCount == 0 && rasters.runCount == 0)
        packed[7 * 2 + 1] = 0x40 // column 9, the last one
        #expect(packed.withUnsafeBufferPointer { rasters.appendPacked($0.baseAddress!) })
        #expect(Array(rasters.runs(image: 0, concept: 0)) == [.init(row: 0, lo: 0, hi: 1), .init(row: 7, lo: 9, hi: 10)])
    }
}

@Suite struct MaskPieceTests {
    /// Pieces against the dense bitmap: their union is the mask, they are disjoint, each holds at
    /// most one run per row, and there are as many as the busiest row has runs.
    @Test func piecesAreTheMaskInOneRunPerRow() {
        let random = RandomCase(images: 60, units: 1, h: 1, w: 1, seed: 5, maskSize: 40, rasters: true)
        let d = random.dictionary, s = d.maskSize
        var shapes = [Bool](), g = SplitMix(seed: 9)
        // Random blobs too, where runs start and end anywhere.
        for _ in 0..<20 { shapes += (0..<(s * s)).map { _ in g.uniform() < 0.3 } }
        var pieces = MaskPieces()
        var masks = (0..<d.imageCount).flatMap { n in (0..<d.conceptCount).map { RasterShapes.bitmap(d, image: n, concept: $0) } }
        masks += (0..<20).map { Array(shapes[($0 * s * s)..<(($0 + 1) * s * s)]) }
        var twoPieces = 0
        for bitmap in masks {
            let runs = Array(MaskRasters(size: s, conceptCount: 1, bitmaps: bitmap).runs(image: 0, concept: 0))
            pieces.split(runs[...])
            var covered = [Int](repeating: 0, count: s * s)
            for piece in (0..<pieces.count).map(pieces.piece) {
                #expect(Set(piece.map(\.row)).count == piece.count, "one run per row")
                #expect(piece.map(\.row) == piece.map(\.row).sorted())
                for run in piece { for col in Int(run.lo)..<Int(run.hi) { covered[Int(run.row) * s + col] += 1 } }
            }
            #expect(covered == bitmap.map { $0 ? 1 : 0 })
            let busiest = Dictionary(grouping: runs, by: \.row).values.map(\.count).max() ?? 0
            #expect(pieces.count == busiest)
            if pieces.count == 2 { twoPieces += 1 }
        }
        #expect(twoPieces > 0)
    }

    /// Two ellipses side by side become two pieces whose columns do not overlap, even when one
    /// reaches rows the other does not.
    @Test func twoEllipsesAreTwoPieces() {
        let s = 32
        var bitmap = [Bool](repeating: false, count: s * s)
        for row in 0..<s {
            for col in 0..<s {
                let left = pow2(Double(col) - 8) / 25 + pow2(Double(row) - 12) / 36 <= 1
                let right = pow2(Double(col) - 23) / 16 + pow2(Double(row) - 18) / 49 <= 1
                bitmap[row * s + col] = left || right
            }
        }
        var pieces = MaskPieces()
        pieces.split(MaskRasters(size: s, conceptCount: 1, bitmaps: bitmap).runs(image: 0, concept: 0))
        #expect(pieces.count == 2)
        let columns = (0..<2).map(pieces.piece).map { piece in (piece.map(\.lo).min()!, piece.map(\.hi).max()!) }
        #expect(columns[0].1 <= columns[1].0 || columns[1].1 <= columns[0].0)
    }

    func pow2(_ x: Double) -> Double { x * x }

    /// ConceptSpans and DictionaryIndex hold every raster exactly: areas per concept, pieces per
    /// concept adding up to the mask, and more than 64 pieces on the striped images.
    @Test func spansHoldEveryRaster() {
        let d = RandomCase(images: 40, units: 1, h: 1, w: 1, seed: 6, maskSize: 32, rasters: true).dictionary
        let index = DictionaryIndex(d), s = d.maskSize
        #expect(index.spans.maxMasksPerImage > 64)
        for n in 0..<d.imageCount {
            var painted = [[Bool]](repeating: [Bool](repeating: false, count: s * s), count: d.conceptCount)
            for mask in index.spans.masks(ofImage: n) {
                for row in 0..<Int(mask.rowCount) {
                    let r = Int(mask.runStart) + row
                    for col in Int(index.spans.runLo[r])..<Int(index.spans.runHi[r]) {
                        #expect(col >= Int(mask.columnLo) && col < Int(mask.columnHi))
                        painted[Int(mask.concept)][(Int(mask.firstRow) + row) * s + col] = true
                    }
                }
            }
            for c in 0..<d.conceptCount {
                let bitmap = RasterShapes.bitmap(d, image: n, concept: c)
                #expect(painted[c] == bitmap, "image \(n), concept \(c)")
                #expect(Int(index.maskArea[n * d.conceptCount + c]) == bitmap.filter { $0 }.count)
            }
        }
    }
}

@Suite struct RasterValidationTests {
    static let base = RandomCase(images: 30, units: 1, h: 1, w: 1, seed: 2, maskSize: 16, rasters: true).dictionary

    /// The first image and concept with the given label.
    func first(label: Int8) -> (image: Int, concept: Int) {
        let d = Self.base
        let i = d.localLabel.firstIndex(of: label)!
        return (i / d.conceptCount, i % d.conceptCount)
    }

    /// `base` with one pixel set on (image, concept).
    func withStrayPixel(at where_: (image: Int, concept: Int), sources: [String]? = nil) -> FaceDictionary {
        var d = Self.base
        var bitmaps: [Bool] = []
        for n in 0..<d.imageCount {
            for c in 0..<d.conceptCount {
                var bitmap = d.rasters!.bitmap(image: n, concept: c)
                if (n, c) == where_ { bitmap[5 * 16 + 3] = true }
                bitmaps += bitmap
            }
        }
        d.rasters = MaskRasters(size: 16, conceptCount: d.conceptCount, bitmaps: bitmaps)
        d.imageSources = sources
        return d
    }

    @Test func aPixelWhereTheConceptIsNotPresentIsAnError() throws {
        try Self.base.validate()
        let sources = (0..<Self.base.imageCount).map { "faces/\($0).png" }
        for label: Int8 in [0, -1] {
            let (n, c) = first(label: label)
            let d = withStrayPixel(at: (n, c), sources: sources)
            #expect(throws: DictionaryError(source: "D.h5", dataset: "/images/masks",
                                            message: "image \(n) (faces/\(n).png), concept \(c) (\(d.concepts[c])): 1 pixel set where local_label is \(label); only a present concept (label 1) may have mask pixels")) {
                try d.validate(source: "D.h5")
            }
        }
    }

    @Test func rastersNeedVersionTwoAndTheirOwnShape() {
        var v1 = Self.base
        v1.version = 1
        #expect { try v1.validate() } throws: { ($0 as? DictionaryError)?.dataset == "/images/masks" && "\($0)".contains("version 2") }
        var small = Self.base
        small.rasters = MaskRasters(size: 8, conceptCount: small.conceptCount)
        #expect { try small.validate() } throws: { ($0 as? DictionaryError)?.dataset == "/images/masks" }
    }

    @Test func ellipsesMayBeNaNWhenRastersDefineTheMasks() throws {
        var d = Self.base
        d.ellipse = [Float](repeating: .nan, count: d.ellipse.count)
        try d.validate()
        d.rasters = nil
        d.version = 1
        #expect { try d.validate() } throws: { ($0 as? DictionaryError)?.dataset == "/images/ellipse" }
    }

    @Test func emptyPresentMasksAreValidAndListed() throws {
        var d = Self.base
        d.rasters = MaskRasters(size: 16, conceptCount: d.conceptCount,
                                bitmaps: [Bool](repeating: false, count: d.imageCount * d.conceptCount * 256))
        d.imageSources = (0..<d.imageCount).map { "img\($0).png" }
        try d.validate()
        let index = DictionaryIndex(d)
        #expect(index.spans.masks.isEmpty && index.maskArea.allSatisfy { $0 == 0 })
        let report = DictionaryReport(index)
        let present = d.localLabel.filter { $0 == 1 }.count
        #expect(report.emptyMasks.count == present)
        let text = report.text(source: "D.h5")
        #expect(text.contains("version 2") && text.contains("masks: rasters"))
        let (n, c) = report.emptyMasks[0]
        #expect(text.contains("present concepts with empty masks: \(present) (image, concept) pairs"))
        #expect(text.contains("  image \(n) (img\(n).png): \(d.concepts[c])"))
        // A layer still counts |M| (every IoU 0) without any mask.
        var layer = LayerAccumulator(layer: "l", index: index, options: .init(quantile: 0.2))
        try RandomCase(images: 30, units: 2, h: 3, w: 3, seed: 2, maskSize: 16).feed(&layer, order: Array(0..<30), batch: 7)
        let snapshot = layer.snapshot()
        #expect(snapshot.iou.allSatisfy { $0 == 0 })
        let thresholds = layer.stageTwoThresholds()
        let counts = layer.stageTwoCounts(thresholds: thresholds, useKernel: false)
        #expect(counts == layer.stageTwoCounts(thresholds: thresholds) && counts.contains { $0 > 0 })
    }
}

@Suite struct RasterCountTests {
    /// IoU on raster masks (two ellipses, rings, three runs a row, edges, empty masks, striped
    /// images of more than 64 pieces) equals the pixel-by-pixel count, partial and complete.
    @Test(arguments: [20, 90])
    func iouMatchesBruteForce(seen: Int) throws {
        let random = RandomCase(images: 90, units: 3, h: 4, w: 5, seed: 31, maskSize: 30, rasters: true)
        #expect(DictionaryIndex(random.dictionary).spans.maxMasksPerImage > 64)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary), options: .init(quantile: 0.3))
        var g = SplitMix(seed: 7)
        let order = Array(Array(0..<90).shuffled(using: &g).prefix(seen))
        try random.feed(&layer, order: order, batch: 5)
        let snapshot = layer.snapshot()
        var compared = 0
        for u in 0..<3 {
            let expected = IoUTests().bruteForceIoU(random, images: order, unit: u, quantile: 0.3)
            #expect(snapshot.threshold[u] == expected.threshold)
            for c in 0..<random.dictionary.conceptCount {
                #expect(abs(Double(snapshot.iou[u * 6 + c]) - expected.iou[c]) < 1e-4, "unit \(u) concept \(c)")
                if expected.iou[c] > 0 { compared += 1 }
            }
        }
        #expect(compared > 6)
    }

    /// The AVX-512 kernel (in groups of 64 pieces) and the Swift path count the same pixels.
    @Test(.enabled(if: CountKernel.isAvailable, "the AVX-512 kernels are off (no AVX-512, or HNDD_NO_AVX512)"),
          arguments: [(3, 3, 40, 0.3), (7, 7, 112, 0.05), (5, 9, 37, 0.1), (14, 14, 56, 0.05)])
    func kernelCountsEqualTheSwiftCounts(h: Int, w: Int, maskSize: Int, quantile: Double) throws {
        let random = RandomCase(images: 40, units: 5, h: h, w: w, seed: UInt64(h * 10 + w), maskSize: maskSize, rasters: true)
        let index = DictionaryIndex(random.dictionary)
        #expect(index.spans.maxMasksPerImage > 64)
        var layer = LayerAccumulator(layer: "l", index: index, options: .init(quantile: quantile))
        try random.feed(&layer, order: Array(0..<40), batch: 8)
        let thresholds = layer.stageTwoThresholds()
        let kernel = layer.stageTwoCounts(thresholds: thresholds, useKernel: true)
        #expect(kernel == layer.stageTwoCounts(thresholds: thresholds, useKernel: false))
        #expect(kernel.contains { $0 > 0 })
    }
}
