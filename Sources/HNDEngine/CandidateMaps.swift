/// The maps of local-set images that may still reach their unit's threshold, kept until the
/// threshold is known so that Stage II counts exactly, at any snapshot.
///
/// A map is kept only when its maximum exceeds the unit's lower bound LB_u (the k-th largest raw
/// value so far, which never exceeds any later threshold), and only sparsely: the values above
/// LB_u and their 3×3 source neighbourhoods. An upsampled pixel can exceed a threshold T ≥ LB_u
/// only in a block with a corner above T, and that block's other corners are the corner's
/// neighbours — so every block Stage II will ever look at is complete. Other values read as −∞.
///
/// Once LB_u has risen past a kept map's maximum the map can never matter again; `discard` drops
/// such maps. At most k values lie above LB_u, so after a `discard` at most k maps per unit
/// remain (in practice far fewer: a map above the threshold holds several such values).
public struct CandidateMaps: Sendable, Equatable {
    public let height: Int, width: Int
    var mapSize: Int { height * width }
    /// Bit words of the "kept positions" mask of one map.
    var wordsPerMap: Int { (mapSize + 63) / 64 }

    /// The maps, column by column. Segmented: a pass keeps millions of maps, and growing
    /// contiguous arrays that large would briefly need three times their size. Shared between
    /// copies of the store until one of them changes (copy-on-write, checked once per call).
    final class Columns: @unchecked Sendable {
        let units: SegmentedBuffer<Int32>, images: SegmentedBuffer<Int32>, peaks: SegmentedBuffer<Float>
        /// `wordsPerMap` words per map: bit p set when position p's value is kept.
        let kept: SegmentedBuffer<UInt64>
        /// Kept values of map i: `values[valueStart[i] ..< valueStart[i + 1]]`, in position order.
        let valueStart: SegmentedBuffer<Int>
        let values: SegmentedBuffer<Float>

        init(units: SegmentedBuffer<Int32> = .init(), images: SegmentedBuffer<Int32> = .init(),
             peaks: SegmentedBuffer<Float> = .init(), kept: SegmentedBuffer<UInt64> = .init(),
             valueStart: SegmentedBuffer<Int> = .init([0]), values: SegmentedBuffer<Float> = .init()) {
            self.units = units; self.images = images; self.peaks = peaks
            self.kept = kept; self.valueStart = valueStart; self.values = values
        }

        func copy() -> Columns {
            Columns(units: units.copy(), images: images.copy(), peaks: peaks.copy(), kept: kept.copy(),
                    valueStart: valueStart.copy(), values: values.copy())
        }
    }

    private var columns = Columns()
    // Read-only views, for state checks and tests; writes go through the mutating methods, which
    // keep copies apart.
    var units: SegmentedBuffer<Int32> { columns.units }
    var images: SegmentedBuffer<Int32> { columns.images }
    var peaks: SegmentedBuffer<Float> { columns.peaks }
    var kept: SegmentedBuffer<UInt64> { columns.kept }
    var valueStart: SegmentedBuffer<Int> { columns.valueStart }
    var values: SegmentedBuffer<Float> { columns.values }

    public static func == (a: CandidateMaps, b: CandidateMaps) -> Bool {
        a.height == b.height && a.width == b.width && a.units.elements == b.units.elements
            && a.images.elements == b.images.elements && a.peaks.elements == b.peaks.elements
            && a.kept.elements == b.kept.elements && a.valueStart.elements == b.valueStart.elements
            && a.values.elements == b.values.elements
    }

    // Element access for the counting loop: through `columns` directly, so that no reference is
    // retained per element.
    @inline(__always) func unit(at i: Int) -> Int32 { columns.units[i] }
    @inline(__always) func image(at i: Int) -> Int32 { columns.images[i] }
    @inline(__always) func peak(at i: Int) -> Float { columns.peaks[i] }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&columns) { columns = columns.copy() }
    }

    /// Size of `values` after the last `discard`: the next is due when it has grown by half.
    private var valuesAfterDiscard = 0

    public init(height: Int, width: Int) {
        self.height = height; self.width = width
    }

    public var count: Int { columns.units.count }

    /// Keeps `map` (h×w) of `unit` on `image` if its maximum `peak` exceeds `bound`.
    /// `scratch` holds `wordsPerMap` words.
    @inline(__always)
    mutating func append(unit: Int, image: Int32, peak: Float, map: UnsafePointer<Float>, bound: Float,
                         scratch: UnsafeMutablePointer<UInt64>) {
        guard peak > bound else { return }
        makeUnique()
        neededPositions(of: map, above: bound, into: scratch)
        columns.units.append(Int32(unit)); columns.images.append(image); columns.peaks.append(peak)
        for i in 0..<wordsPerMap { columns.kept.append(scratch[i]) }
        for i in 0..<wordsPerMap {
            var bits = scratch[i]
            while bits != 0 {
                columns.values.append(map[i << 6 | bits.trailingZeroBitCount])
                bits &= bits - 1
            }
        }
        columns.valueStart.append(columns.values.count)
    }

    /// The positions to keep of `map` (−∞ where unknown) for thresholds above `bound`: those
    /// above it and their 3×3 neighbourhoods, as `wordsPerMap` bit words in `scratch`.
    @inline(__always)
    func neededPositions(of map: UnsafePointer<Float>, above bound: Float, into scratch: UnsafeMutablePointer<UInt64>) {
        let h = height, w = width, n = mapSize
        if bound == -.infinity {
            // Everything is needed (and −∞ is never above it).
            for i in 0..<wordsPerMap { scratch[i] = i < n >> 6 ? ~0 : (1 << UInt64(n & 63)) - 1 }
        } else if n <= 64 {
            // One word: the positions above the bound, dilated by one in each direction with
            // shifts (columns masked so that nothing wraps from one row into the next).
            var above: UInt64 = 0
            for p in 0..<n where map[p] > bound { above |= 1 << UInt64(p) }
            let all: UInt64 = n == 64 ? ~0 : (1 << UInt64(n)) - 1
            let (notFirstColumn, notLastColumn) = Self.columnMasks(height: h, width: w)
            var kept = above | (above << 1 & notFirstColumn) | (above >> 1 & notLastColumn)
            kept |= kept << UInt64(w) | kept >> UInt64(w)
            scratch[0] = kept & all
        } else {
            scratch.initialize(repeating: 0, count: wordsPerMap)
            for y in 0..<h {
                for x in 0..<w where map[y * w + x] > bound {
                    for ny in max(y - 1, 0)...min(y + 1, h - 1) {
                        for nx in max(x - 1, 0)...min(x + 1, w - 1) {
                            let p = ny * w + nx
                            scratch[p >> 6] |= 1 << UInt64(p & 63)
                        }
                    }
                }
            }
        }
    }

    /// For a map of at most 64 positions: the positions not in the first column, and those not
    /// in the last.
    @inline(__always) static func columnMasks(height: Int, width: Int) -> (UInt64, UInt64) {
        var first: UInt64 = 0, last: UInt64 = 0
        for y in 0..<height {
            first |= 1 << UInt64(y * width)
            last |= 1 << UInt64(y * width + width - 1)
        }
        return (~first, ~last)
    }

    /// Whether enough has been added since the last `discard` to make one worth it.
    var discardIsDue: Bool { columns.values.count > valuesAfterDiscard + valuesAfterDiscard / 2 + (1 << 19) }

    /// Drops every map whose maximum no longer exceeds its unit's lower bound, and from the
    /// others the values no longer needed under the risen bound. In place, in one sweep: what is
    /// kept never lies after what is read.
    mutating func discard(bounds: UnsafePointer<Float>) {
        makeUnique()
        let words = wordsPerMap
        var out = 0, valueOut = 0
        var start = 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: mapSize) { dense in
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { needed in
            let dense = dense.baseAddress!, needed = needed.baseAddress!
            for i in 0..<count {
                let end = columns.valueStart[i + 1]
                defer { start = end }
                let bound = bounds[Int(columns.units[i])]
                guard columns.peaks[i] > bound else { continue }
                columns.units[out] = columns.units[i]; columns.images[out] = columns.images[i]; columns.peaks[out] = columns.peaks[i]
                if end - start <= 9 {
                    // One value's neighbourhood at most: nothing to shed, only to move.
                    for j in 0..<words { columns.kept[out * words + j] = columns.kept[i * words + j] }
                    for v in start..<end { columns.values[valueOut] = columns.values[v]; valueOut += 1 }
                } else {
                    expand(i, valuesFrom: start, into: dense)
                    neededPositions(of: dense, above: bound, into: needed)
                    for j in 0..<words {
                        let bits = needed[j] & columns.kept[i * words + j]
                        columns.kept[out * words + j] = bits
                        var rest = bits
                        while rest != 0 {
                            columns.values[valueOut] = dense[j << 6 | rest.trailingZeroBitCount]
                            valueOut += 1
                            rest &= rest - 1
                        }
                    }
                }
                out += 1
                columns.valueStart[out] = valueOut
            }
        }}
        columns.units.truncate(to: out); columns.images.truncate(to: out); columns.peaks.truncate(to: out)
        columns.kept.truncate(to: out * words)
        columns.valueStart.truncate(to: out + 1)
        columns.values.truncate(to: valueOut)
        valuesAfterDiscard = columns.values.count
    }

    /// Writes map i into `dense` (h×w), −∞ where no value was kept.
    @inline(__always)
    func expand(_ i: Int, into dense: UnsafeMutablePointer<Float>) {
        expand(i, valuesFrom: columns.valueStart[i], into: dense)
    }

    @inline(__always)
    private func expand(_ i: Int, valuesFrom start: Int, into dense: UnsafeMutablePointer<Float>) {
        dense.update(repeating: -.infinity, count: mapSize)
        var v = start
        for j in 0..<wordsPerMap {
            var bits = columns.kept[i * wordsPerMap + j]
            while bits != 0 {
                dense[j << 6 | bits.trailingZeroBitCount] = columns.values[v]
                v += 1
                bits &= bits - 1
            }
        }
    }

    // MARK: state

    func encode(into w: inout ByteWriter) {
        w.put(units.elements); w.put(images.elements); w.put(peaks.elements); w.put(kept.elements); w.put(values.elements)
        w.put(valueStart.elements.map(Int64.init))
    }

    static func decode(from r: inout ByteReader, height: Int, width: Int) throws(StateError) -> CandidateMaps {
        var m = CandidateMaps(height: height, width: width)
        let units = try r.getArray(Int32.self), images = try r.getArray(Int32.self)
        let peaks = try r.getArray(Float.self), kept = try r.getArray(UInt64.self)
        let values = try r.getArray(Float.self)
        let valueStart = try r.getArray(Int64.self).map(Int.init)
        let n = units.count
        guard images.count == n, peaks.count == n, kept.count == n * m.wordsPerMap,
              valueStart.count == n + 1, valueStart.first == 0, valueStart.last == values.count else {
            throw StateError("candidate maps have inconsistent sizes")
        }
        for i in 0..<n {
            let popcount = (0..<m.wordsPerMap).reduce(0) { $0 + kept[i * m.wordsPerMap + $1].nonzeroBitCount }
            guard valueStart[i + 1] - valueStart[i] == popcount else { throw StateError("candidate map \(i) is corrupt") }
        }
        m.columns = Columns(units: SegmentedBuffer(units), images: SegmentedBuffer(images), peaks: SegmentedBuffer(peaks),
                            kept: SegmentedBuffer(kept), valueStart: SegmentedBuffer(valueStart), values: SegmentedBuffer(values))
        m.valuesAfterDiscard = m.values.count
        return m
    }

    /// Appends another store's maps (a merge; units must be in range of this store's user).
    mutating func append(contentsOf other: CandidateMaps, where include: (Int32) -> Bool) {
        precondition(other.height == height && other.width == width)
        makeUnique()
        for i in 0..<other.count where include(other.units[i]) {
            units.append(other.units[i]); images.append(other.images[i]); peaks.append(other.peaks[i])
            for j in (i * wordsPerMap)..<((i + 1) * wordsPerMap) { kept.append(other.kept[j]) }
            for j in other.valueStart[i]..<other.valueStart[i + 1] { values.append(other.values[j]) }
            valueStart.append(values.count)
        }
        valuesAfterDiscard = values.count
    }
}
