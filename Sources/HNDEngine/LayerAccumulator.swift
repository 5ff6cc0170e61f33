import CHNDKernels
import Dispatch
import Foundation

/// Options of the dissection (docs/3-numbers.md, §5).
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
/// N×C (one maximum per image and unit) plus the maps that may still cross a threshold, never
/// with N×C×h×w.
///
/// Per unit it keeps: the maxima (Stages I, III), an exact top-k of raw values giving the
/// threshold T_u (Stage II), and the maps whose maximum exceeds the k-th largest value so far — a
/// lower bound of every later T_u — sparsely, so that |M| and |M ∩ L| are counted exactly at
/// snapshot time.
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
    /// The candidate maps, one store per worker; store s holds the units `shardUnits(s)`.
    public internal(set) var candidates: [CandidateMaps] = []
    /// Σ over seen images of D_c of |L_{n,c}|, per concept.
    public internal(set) var maskAreaSeen: [Double]
    /// [C, N] maxima of the run's first complete pass, for "biased beyond the untrained network"
    /// (`setBaseline`); nil until the run has one.
    public internal(set) var baselineMaxima: [Float]?
    /// What the change test needs of the baseline, built once (`BaselineWeights`); nil: built
    /// by each complete snapshot that needs them.
    public internal(set) var baselineWeights: BaselineWeights?
    var upsampler: BilinearUpsampler?
    /// The AVX-512 Stage II count, where the CPU has it.
    var countKernel: CountKernel?
    /// Bytes a candidate store grows by, beyond half its size, before it is swept (tests sweep
    /// after every batch).
    var discardSlack = 2 << 20
    /// Records in a piece of a candidate store (tests make pieces small).
    var recordsPerPiece = CandidateMaps.recordsPerPiece

    public init(layer: String, index: DictionaryIndex, options: DissectionOptions = .init()) {
        self.layer = layer
        self.index = index
        self.options = options
        seen = [Bool](repeating: false, count: index.imageCount)
        maskAreaSeen = [Double](repeating: 0, count: index.conceptCount)
    }

    var mapSize: Int { height * width }
    var rule: QuantileRule { QuantileRule(upperTail: options.quantile) }

    /// Units of candidate store `shard`.
    func shardUnits(_ shard: Int) -> Range<Int> {
        (shard * units / candidates.count)..<((shard + 1) * units / candidates.count)
    }

    /// Checks a batch against the layer without changing anything; returns the maximum of each
    /// of its maps ([B, C]), found in the same pass that checks every value is finite.
    public func validate(imageIDs: [Int64], units c: Int, height h: Int, width w: Int,
                         values: UnsafeBufferPointer<Float>) throws(BatchError) -> [Float] {
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
        let (peaks, finite) = Self.maxima(values, maps: imageIDs.count * c, mapSize: h * w)
        if !finite {
            // Only now look for the culprit.
            for i in 0..<values.count where !values[i].isFinite {
                let image = i / perImage, unit = (i % perImage) / (h * w)
                throw .nonFinite(imageID: imageIDs[image], unit: unit, position: i % (h * w), value: values[i])
            }
        }
        return peaks
    }

    /// The maximum of each map, and whether every value is finite: one vector pass over the
    /// batch, a slice per worker.
    static func maxima(_ values: UnsafeBufferPointer<Float>, maps: Int, mapSize: Int) -> ([Float], Bool) {
        guard maps > 0, let base = values.baseAddress else { return ([], true) }
        let slices = maps * mapSize >= 1 << 20 ? workerCount : 1
        var finite = [Bool](repeating: true, count: slices)
        let peaks = [Float](unsafeUninitializedCapacity: maps) { peaks, initialized in
            finite.withUnsafeMutableBufferPointer { finite in
                let finite = UnsafeSendable(finite.baseAddress!), base = UnsafeSendable(base), out = UnsafeSendable(peaks.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: slices) { slice in
                    let first = maps * slice / slices, end = maps * (slice + 1) / slices
                    finite.value[slice] = hndd_maxima(base.value + first * mapSize, Int64(end - first), Int32(mapSize),
                                                      out.value + first) != 0
                }
            }
            initialized = maps
        }
        return (peaks, !finite.contains(false))
    }

    /// Adds a batch: `values` is [B, C, h, w] row-major for the images `imageIDs`.
    /// Throws without changing anything when the batch is malformed.
    @discardableResult
    public mutating func add(imageIDs: [Int64], units c: Int, height h: Int, width w: Int,
                             values: UnsafeBufferPointer<Float>) throws(BatchError) -> BatchOutcome {
        let peaks = try validate(imageIDs: imageIDs, units: c, height: h, width: w, values: values)
        if units == 0 { start(units: c, height: h, width: w) }

        var accepted: [(row: Int, image: Int)] = []
        var duplicates: [Int64] = []
        for (row, id) in imageIDs.enumerated() {
            let image = Int(id)
            if seen[image] { duplicates.append(id); continue }
            seen[image] = true
            accepted.append((row, image))
        }
        addMaps(accepted: accepted, values: values, peaks: peaks)
        imagesSeen += accepted.count
        for (_, image) in accepted where index.inLocalSet[image] {
            localImagesSeen += 1
            for concept in 0..<index.conceptCount {
                maskAreaSeen[concept] += Double(index.maskArea[image * index.conceptCount + concept])
            }
        }
        return BatchOutcome(accepted: accepted.count, duplicates: duplicates)
    }

    mutating func start(units c: Int, height h: Int, width w: Int) {
        units = c; height = h; width = w
        maxima = [Float](repeating: 0, count: c * index.imageCount)
        let needed = rule.valuesNeeded(population: max(index.localSetSize * h * w, 1))
        topValues = [TopValues](repeating: TopValues(capacity: needed, slack: h * w), count: c)
        // More stores than cores: concurrentPerform then balances them when another thread (the
        // daemon's receiver, a trainer on the same machine) takes a core for a while.
        candidates = [CandidateMaps](repeating: CandidateMaps(height: h, width: w, recordsPerPiece: recordsPerPiece),
                                   count: min(c, 4 * Self.workerCount))
        upsampler = BilinearUpsampler(height: h, width: w, size: index.dictionary.maskSize)
        countKernel = CountKernel(upsampler!, spans: index.spans)
    }

    /// One sweep over the batch per worker, each taking a range of units, image by image so the
    /// batch is read in order: the maxima of every image; for local-set images, the raw values
    /// above each unit's lower bound into its top-k and the map, if it may still cross the
    /// threshold, into the unit's candidate store.
    /// `peaks`: each map's maximum, [B, C].
    mutating func addMaps(accepted: [(row: Int, image: Int)], values: UnsafeBufferPointer<Float>, peaks: [Float]) {
        let c = units, hw = mapSize, n = index.imageCount
        let inLocal = index.inLocalSet
        let base = UnsafeSendable(values.baseAddress!)
        let shards = candidates.count
        let ranges = (0..<shards).map(shardUnits)
        let words = (hw + 63) / 64
        let slack = discardSlack
        peaks.withUnsafeBufferPointer { allPeaks in
        maxima.withUnsafeMutableBufferPointer { maxima in
        topValues.withUnsafeMutableBufferPointer { tops in
        candidates.withUnsafeMutableBufferPointer { stores in
            let allPeaks = UnsafeSendable(allPeaks.baseAddress!)
            let maxima = UnsafeSendable(maxima.baseAddress!), tops = UnsafeSendable(tops.baseAddress!)
            let stores = UnsafeSendable(stores.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: shards) { s in
                let store = stores.value + s, units = ranges[s]
                withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * words) { scratch in
                    let above = scratch.baseAddress!, needed = above + words
                    for (row, image) in accepted {
                        let maps = base.value + (row * c + units.lowerBound) * hw
                        let peaks = allPeaks.value + row * c + units.lowerBound
                        for (i, u) in units.enumerated() { maxima.value[u * n + image] = peaks[i] }
                        guard inLocal[image] else { continue }
                        for (i, u) in units.enumerated() {
                            let top = tops.value + u, peak = peaks[i]
                            let bound = top.pointee.lowerBound
                            guard peak > bound else { continue }
                            let map = maps + i * hw
                            top.pointee.offer(valuesOf: map, count: hw, above: above)
                            // The top-k may have raised its bound while taking them.
                            let risen = top.pointee.lowerBound
                            if risen != bound { hndd_above(map, Int32(hw), risen, nil, above) }
                            store.pointee.append(unit: u, image: Int32(image), peak: peak, map: map, above: above, bound: risen, scratch: needed)
                        }
                    }
                }
                if store.pointee.discardIsDue(slack: slack) {
                    var bounds = [Float](repeating: .infinity, count: c)
                    for u in ranges[s] { bounds[u] = tops.value[u].lowerBound }
                    store.pointee.discard(bounds: bounds)
                }
            }
        }}}}
    }

    /// Threads the engine uses.
    static let workerCount = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// Carries a pointer into `concurrentPerform`, whose iterations touch disjoint parts of it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
