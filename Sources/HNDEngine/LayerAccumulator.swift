import Dispatch
import Foundation

/// Options of the dissection (SPEC §3, §5).
public struct DissectionOptions: Sendable, Equatable {
    /// q: the threshold is the (1 − q) quantile. The authors' code ships 0.05; the paper and
    /// Network Dissection use 0.005, which we keep.
    public var quantile: Double = 0.005
    public var iouFloor: Double = 0.04
    /// How many top-activating image ids each snapshot keeps per unit.
    public var topImages: Int = 8
    public init(quantile: Double = 0.005, iouFloor: Double = 0.04, topImages: Int = 8) {
        self.quantile = quantile
        self.iouFloor = iouFloor
        self.topImages = topImages
    }
}

/// A batch the engine refuses; nothing of it has been applied.
public enum BatchError: Error, Equatable, CustomStringConvertible {
    case emptyShape(units: Int, height: Int, width: Int)
    case valueCount(expected: Int, got: Int)
    case unitCountChanged(expected: Int, got: Int)
    case mapSizeChanged(expected: (Int, Int), got: (Int, Int))
    case imageIDOutOfRange(position: Int, id: Int64, imageCount: Int)
    case nonFinite(imageID: Int64, unit: Int, position: Int, value: Float)

    public static func == (a: BatchError, b: BatchError) -> Bool { a.description == b.description }

    /// A stable short name, for counters.
    public var reason: String {
        switch self {
        case .emptyShape: "empty_shape"
        case .valueCount: "size_mismatch"
        case .unitCountChanged: "unit_count_changed"
        case .mapSizeChanged: "map_size_changed"
        case .imageIDOutOfRange: "image_id_out_of_range"
        case .nonFinite: "non_finite"
        }
    }

    public var description: String {
        switch self {
        case let .emptyShape(c, h, w): "batch shape C×h×w = \(c)×\(h)×\(w) has an empty dimension"
        case let .valueCount(e, g): "expected \(e) activation values for the batch's shape, got \(g)"
        case let .unitCountChanged(e, g): "the layer has \(e) units, this batch has \(g)"
        case let .mapSizeChanged(e, g): "the layer's maps are \(e.0)×\(e.1), this batch's are \(g.0)×\(g.1)"
        case let .imageIDOutOfRange(p, id, n): "image id \(id) (position \(p) in the batch) is out of range 0..<\(n)"
        case let .nonFinite(id, u, p, v): "activation of image \(id), unit \(u), position \(p) is \(v)"
        }
    }
}

/// What a batch contributed.
public struct BatchOutcome: Sendable, Equatable {
    public var accepted: Int
    /// Image ids already seen in this pass (or repeated within the batch): counted once, skipped.
    public var duplicates: [Int64]
}

/// The streaming state of Hierarchical Network Dissection for one layer and one probe pass. Feed
/// it batches in any order (`add`), take a snapshot at any time (`snapshot`). Memory grows with
/// N×C (one maximum per image and unit), never with N×C×h×w.
///
/// Per unit it keeps: the maxima (Stages I, III), an exact top-k of raw values giving the
/// threshold T_u (Stage II), and a histogram of the upsampled pixels above the k-th largest value
/// so far — a lower bound of the final T_u — from which |M| and |M ∩ L| at T_u follow.
public struct LayerAccumulator: Sendable {
    public let index: DictionaryIndex
    public let options: DissectionOptions
    public let layer: String
    public internal(set) var units = 0
    public internal(set) var height = 0
    public internal(set) var width = 0

    public internal(set) var seen: [Bool]
    public internal(set) var imagesSeen = 0
    public internal(set) var localImagesSeen = 0
    /// [C, N] unit-major: each unit's maxima contiguous for ranking.
    public internal(set) var maxima: [Float] = []
    public internal(set) var topValues: [TopValues] = []
    public internal(set) var histograms: [TailHistogram] = []
    /// Σ over seen images of D_c of |L_{n,c}|, per concept.
    public internal(set) var maskAreaSeen: [Double]
    /// Maps of local-set images that arrived before each unit had k values (the threshold's
    /// lower bound is −∞ until then): [image][C][h][w]. Bounded by about q·|D_L| images.
    public internal(set) var pendingMaps: [Float] = []
    public internal(set) var pendingImages: [Int32] = []
    var upsampler: BilinearUpsampler?

    public init(layer: String, index: DictionaryIndex, options: DissectionOptions = .init()) {
        self.layer = layer
        self.index = index
        self.options = options
        seen = [Bool](repeating: false, count: index.imageCount)
        maskAreaSeen = [Double](repeating: 0, count: index.conceptCount)
    }

    var mapSize: Int { height * width }
    var rule: QuantileRule { QuantileRule(upperTail: options.quantile) }
    /// Whether every unit's threshold lower bound is established (k values of the local set
    /// seen); until then maps of the local set wait in `pendingMaps`.
    public internal(set) var isWarm = false

    /// Checks a batch against the layer without changing anything.
    public func validate(imageIDs: [Int64], units c: Int, height h: Int, width w: Int,
                         values: UnsafeBufferPointer<Float>) throws(BatchError) {
        guard c > 0, h > 0, w > 0 else { throw .emptyShape(units: c, height: h, width: w) }
        let (perImage, o1) = c.multipliedReportingOverflow(by: h * w)
        let (expected, o2) = perImage.multipliedReportingOverflow(by: imageIDs.count)
        guard !o1, !o2, values.count == expected else { throw .valueCount(expected: o1 || o2 ? -1 : expected, got: values.count) }
        if units > 0 {
            guard c == units else { throw .unitCountChanged(expected: units, got: c) }
            guard h == height, w == width else { throw .mapSizeChanged(expected: (height, width), got: (h, w)) }
        }
        for (p, id) in imageIDs.enumerated() where id < 0 || id >= Int64(index.imageCount) {
            throw .imageIDOutOfRange(position: p, id: id, imageCount: index.imageCount)
        }
        // One pass over the values: the sum of finite floats is finite or ±∞, never NaN; only
        // when it is not finite do we look for the culprit.
        var sum: Float = 0
        for v in values { sum += v * 0 }
        if !sum.isFinite || sum.isNaN {
            for i in 0..<values.count where !values[i].isFinite {
                let image = i / perImage, unit = (i % perImage) / (h * w)
                throw .nonFinite(imageID: imageIDs[image], unit: unit, position: i % (h * w), value: values[i])
            }
        }
    }

    /// Adds a batch: `values` is [B, C, h, w] row-major for the images `imageIDs`.
    /// Throws without changing anything when the batch is malformed.
    @discardableResult
    public mutating func add(imageIDs: [Int64], units c: Int, height h: Int, width w: Int,
                             values: UnsafeBufferPointer<Float>) throws(BatchError) -> BatchOutcome {
        try validate(imageIDs: imageIDs, units: c, height: h, width: w, values: values)
        if units == 0 { start(units: c, height: h, width: w) }

        var accepted: [(row: Int, image: Int)] = []
        var duplicates: [Int64] = []
        for (row, id) in imageIDs.enumerated() {
            let image = Int(id)
            if seen[image] { duplicates.append(id); continue }
            seen[image] = true
            accepted.append((row, image))
        }
        let perImage = c * h * w
        let localRows = accepted.filter { index.inLocalSet[$0.image] }
        updateMaximaAndTopValues(accepted: accepted, values: values)
        imagesSeen += accepted.count
        localImagesSeen += localRows.count
        for (_, image) in localRows {
            for concept in 0..<index.conceptCount {
                maskAreaSeen[concept] += Double(index.maskArea[image * index.conceptCount + concept])
            }
        }

        let localImages = localRows.map { Int32($0.image) }
        if !isWarm, let first = topValues.first, localImagesSeen * mapSize >= first.capacity {
            for u in 0..<units { topValues[u].compact() }
            isWarm = true
        }
        if isWarm {
            if !pendingImages.isEmpty {
                let maps = pendingMaps, images = pendingImages
                pendingMaps = []; pendingImages = []
                maps.withUnsafeBufferPointer { recordTails(maps: $0.baseAddress!, rows: images.indices.map { $0 }, images: images) }
            }
            recordTails(maps: values.baseAddress!, rows: localRows.map(\.row), images: localImages)
            for u in 0..<units { histograms[u].discard(below: topValues[u].lowerBound) }
        } else {
            for (row, image) in localRows {
                pendingMaps.append(contentsOf: values[(row * perImage)..<((row + 1) * perImage)])
                pendingImages.append(Int32(image))
            }
        }
        return BatchOutcome(accepted: accepted.count, duplicates: duplicates)
    }

    mutating func start(units c: Int, height h: Int, width w: Int) {
        units = c; height = h; width = w
        maxima = [Float](repeating: 0, count: c * index.imageCount)
        let needed = rule.valuesNeeded(population: max(index.localSetSize * h * w, 1))
        topValues = [TopValues](repeating: TopValues(capacity: needed), count: c)
        histograms = [TailHistogram](repeating: TailHistogram(rows: index.histogramRows), count: c)
        upsampler = BilinearUpsampler(height: h, width: w, size: index.dictionary.maskSize)
    }

    /// Stage I/III maxima for every image; raw values of local-set images into the top-k.
    mutating func updateMaximaAndTopValues(accepted: [(row: Int, image: Int)], values: UnsafeBufferPointer<Float>) {
        let c = units, hw = mapSize, n = index.imageCount
        let inLocal = index.inLocalSet
        let base = values.baseAddress!
        maxima.withUnsafeMutableBufferPointer { maxima in
            topValues.withUnsafeMutableBufferPointer { tops in
                let maxima = UnsafeSendable(maxima), tops = UnsafeSendable(tops), base = UnsafeSendable(base)
                DispatchQueue.concurrentPerform(iterations: c) { u in
                    for (row, image) in accepted {
                        let map = base.value + (row * c + u) * hw
                        var m = map[0]
                        for i in 1..<hw { m = max(m, map[i]) }
                        maxima.value[u * n + image] = m
                        if inLocal[image], m > tops.value[u].lowerBound {
                            for i in 0..<hw { tops.value[u].offer(map[i]) }
                        }
                    }
                }
            }
        }
    }

    /// Upsamples the maps of local-set images wherever they can exceed each unit's threshold
    /// lower bound and counts those pixels, by value, per histogram row.
    mutating func recordTails(maps: UnsafePointer<Float>, rows: [Int], images: [Int32]) {
        guard let upsampler else { return }
        // 64 images of 16-bit combination ids (≈ 1.6 MB at S = 112) stay in L2 while each unit
        // walks them with its histogram hot.
        let chunk = 64
        var grid = ConceptGrid(capacity: min(chunk, rows.count), size: upsampler.size)
        for start in stride(from: 0, to: rows.count, by: chunk) {
            let end = min(start + chunk, rows.count)
            grid.fill(images: images[start..<end], dictionary: index.dictionary)
            recordTailChunk(maps: maps, rows: Array(rows[start..<end]), images: Array(images[start..<end]), grid: grid)
        }
    }

    /// Each worker takes a range of units; a unit walks the chunk's images with its histogram hot.
    mutating func recordTailChunk(maps: UnsafePointer<Float>, rows: [Int], images: [Int32], grid: ConceptGrid) {
        let c = units, hw = mapSize, n = index.imageCount
        let upsampler = upsampler!, s2 = grid.pixelsPerImage
        let countRowsOfImage = index.countRowsOfImage, countRows = index.countRows
        let workers = min(c, Self.workerCount)
        let maps = UnsafeSendable(maps)
        let tables = grid.tables
        maxima.withUnsafeBufferPointer { maximaBuffer in
        let maximaCopy = UnsafeSendable(maximaBuffer.baseAddress!)
        grid.ids.withUnsafeBufferPointer { ids in
            let ids = UnsafeSendable(ids.baseAddress!)
            topValues.withUnsafeBufferPointer { tops in
                let tops = UnsafeSendable(tops)
                histograms.withUnsafeMutableBufferPointer { hists in
                    let hists = UnsafeSendable(hists)
                    DispatchQueue.concurrentPerform(iterations: workers) { worker in
                        for u in (worker * c / workers)..<((worker + 1) * c / workers) {
                            let bound = tops.value[u].lowerBound
                            hists.value[u].withRecorder { recorder in
                                for (i, row) in rows.enumerated() {
                                    let image = Int(images[i])
                                    if maximaCopy.value[u * n + image] <= bound { continue }
                                    let map = maps.value + (row * c + u) * hw
                                    let pixels = ids.value + i * s2
                                    let countBits = countRowsOfImage[image]
                                    tables[i].withUnsafeBufferPointer { table in
                                        upsampler.forEachPixel(of: map, above: bound) { pixel, v in
                                            recorder.count(v, countBits: countBits, conceptBits: table[Int(pixels[pixel])], countRows: countRows)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        }
    }

    /// Threads the engine uses; OpenBLAS, where used, is kept single-threaded.
    static let workerCount = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

extension TailHistogram.Recorder {
    /// One pixel: +1 in each |M| row of its image, +1 in the |M ∩ L| row of each concept
    /// covering it.
    @inline(__always) func count(_ v: Float, countBits: UInt64, conceptBits: UInt64, countRows: Int) {
        let bin = bin(v)
        let stride = TailHistogram.binsPerPage
        var bits = countBits
        while bits != 0 { bin[bits.trailingZeroBitCount &* stride] &+= 1; bits &= bits - 1 }
        bits = conceptBits
        while bits != 0 { bin[(countRows &+ bits.trailingZeroBitCount) &* stride] &+= 1; bits &= bits - 1 }
    }
}

/// Carries a pointer into `concurrentPerform`, whose iterations touch disjoint parts of it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
