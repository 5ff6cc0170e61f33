import CHNDKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
///
/// The maps are records in one byte arena, appended and swept in order: a pass keeps millions of
/// them, and per-record arrays or objects cost more than the few values a record holds.
public struct CandidateMaps: Sendable, Equatable {
    public let height: Int, width: Int
    var mapSize: Int { height * width }
    /// Bit words of the "kept positions" mask of one map.
    let wordsPerMap: Int

    /// Record layout, 4-byte aligned: unit (Int32), image (Int32), peak (Float), `shedAt` (Float),
    /// value count (UInt32), `wordsPerMap` kept-position words (bit p set when position p is
    /// kept; read unaligned), then the kept values in position order. `shedAt` is the smallest
    /// kept value above the bound the record was written under: until a bound reaches it, the
    /// record keeps exactly what it needs.
    static let headerBytes = 20
    func recordBytes(values: Int) -> Int { Self.headerBytes + 8 * wordsPerMap + 4 * values }

    /// The arena. Shared between copies of the store until one of them changes (copy-on-write,
    /// checked once per mutating call).
    ///
    /// Its own mapping (on Linux), grown with `mremap` — which moves pages, never copies them, so
    /// growing never holds two copies — and given back past `used` after each `discard`, so that
    /// the process's resident size follows what is kept, not what was once appended.
    final class Arena: @unchecked Sendable {
        private(set) var base: UnsafeMutableRawPointer?
        private(set) var capacity = 0
        /// Bytes in use, and records in them.
        var used = 0, count = 0
        /// Where records 0, P, 2P, … begin (P = `recordsPerPiece`): the pieces Stage II counts
        /// in parallel.
        var pieceStarts: [Int] = []
        let recordsPerPiece: Int

        init(recordsPerPiece: Int) { self.recordsPerPiece = recordsPerPiece }

        /// Notes that a record begins at `offset`, the `count`-th.
        @inline(__always) func noteRecord(at offset: Int) {
            if count % recordsPerPiece == 0 { pieceStarts.append(offset) }
        }

        deinit { hndd_arena_free(base, capacity) }

        func copy() -> Arena {
            let other = Arena(recordsPerPiece: recordsPerPiece)
            other.reserve(used)
            if used > 0 { other.base!.copyMemory(from: base!, byteCount: used) }
            other.used = used; other.count = count; other.pieceStarts = pieceStarts
            return other
        }

        /// Room for `bytes` more, growing by half at least.
        @inline(__always) func reserve(_ bytes: Int) {
            guard used + bytes > capacity else { return }
            grow(to: used + bytes)
        }

        private static let page = 1 << 12

        private func grow(to needed: Int) {
            let newCapacity = (max(needed, capacity + capacity / 2, 1 << 20) + Self.page - 1) & ~(Self.page - 1)
            guard let grown = hndd_arena_resize(base, capacity, newCapacity) else {
                fatalError("out of memory for \(newCapacity) bytes of candidate maps")
            }
            base = grown
            capacity = newCapacity
        }

        /// Gives the pages past `used` back to the system (they read as zeros if touched again).
        func releaseUnused() {
            guard let base else { return }
            hndd_arena_release(base, (used + Self.page - 1) & ~(Self.page - 1), capacity)
        }
    }

    /// Internal, not private: merging appends other stores' records (CandidateMapsMerge.swift).
    var arena: Arena

    /// Arena bytes after the last `discard`: the next is due when they have grown by half.
    var bytesAfterDiscard = 0  // internal: a restored state sets it (CandidateMapsState.swift)

    /// For maps of at most 64 positions: those not in the first column, and not in the last.
    private let notFirstColumn: UInt64, notLastColumn: UInt64

    /// `recordsPerPiece`: records a piece holds at most (see `pieces`).
    public init(height: Int, width: Int, recordsPerPiece: Int = CandidateMaps.recordsPerPiece) {
        precondition(recordsPerPiece > 0)
        arena = Arena(recordsPerPiece: recordsPerPiece)
        self.height = height; self.width = width
        wordsPerMap = (height * width + 63) / 64
        (notFirstColumn, notLastColumn) = height * width <= 64 ? Self.columnMasks(height: height, width: width) : (0, 0)
    }

    public static func == (a: CandidateMaps, b: CandidateMaps) -> Bool {
        guard a.height == b.height, a.width == b.width, a.arena.count == b.arena.count, a.arena.used == b.arena.used else { return false }
        guard a.arena.used > 0 else { return true }
        return memcmp(a.arena.base!, b.arena.base!, a.arena.used) == 0
    }

    public var count: Int { arena.count }
    /// Bytes the kept maps take.
    public var bytes: Int { arena.used }

    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&arena) { arena = arena.copy() }
    }

    /// One kept map, read in place.
    struct Record {
        let pointer: UnsafeRawPointer
        var unit: Int32 { pointer.load(as: Int32.self) }
        var image: Int32 { pointer.load(fromByteOffset: 4, as: Int32.self) }
        var peak: Float { pointer.load(fromByteOffset: 8, as: Float.self) }
        var shedAt: Float { pointer.load(fromByteOffset: 12, as: Float.self) }
        var valueCount: Int { Int(pointer.load(fromByteOffset: 16, as: UInt32.self)) }
        /// The kept-position words (4-byte aligned).
        var keptWords: UnsafeRawPointer { pointer + CandidateMaps.headerBytes }
        /// Kept-position word j.
        func kept(_ j: Int) -> UInt64 { pointer.loadUnaligned(fromByteOffset: CandidateMaps.headerBytes + 8 * j, as: UInt64.self) }
        func values(words: Int) -> UnsafePointer<Float> {
            (pointer + CandidateMaps.headerBytes + 8 * words).assumingMemoryBound(to: Float.self)
        }
    }

    /// Records a piece holds at most by default: 2¹⁵ (about 2 MB), so that a snapshot's workers
    /// share a store's maps and none is left counting alone at the end.
    public static let recordsPerPiece = 1 << 15

    /// The store's maps in pieces of at most `recordsPerPiece` records (byte ranges), in order.
    var pieces: [Range<Int>] {
        let starts = arena.pieceStarts
        return starts.indices.map { i in starts[i]..<(i + 1 < starts.count ? starts[i + 1] : arena.used) }
    }

    /// Calls `body` with every kept map, in the order they were added (or those of one piece).
    @inline(__always)
    func forEach(in piece: Range<Int>? = nil, _ body: (Record) -> Void) {
        guard let base = arena.base else { return }
        var offset = piece?.lowerBound ?? 0
        let end = piece?.upperBound ?? arena.used
        while offset < end {
            let record = Record(pointer: base + offset)
            body(record)
            offset += recordBytes(values: record.valueCount)
        }
    }

    // Columns and random access, for tests and checks (a walk each).
    var units: [Int32] { var a: [Int32] = []; forEach { a.append($0.unit) }; return a }
    var images: [Int32] { var a: [Int32] = []; forEach { a.append($0.image) }; return a }
    var peaks: [Float] { var a: [Float] = []; forEach { a.append($0.peak) }; return a }
    func expand(_ i: Int, into dense: UnsafeMutablePointer<Float>) {
        var n = 0
        forEach { record in
            if n == i { expand(record, into: dense) }
            n += 1
        }
    }

    /// Writes `record`'s map into `dense` (h×w), −∞ where no value was kept.
    @inline(__always)
    func expand(_ record: Record, into dense: UnsafeMutablePointer<Float>) {
        dense.update(repeating: -.infinity, count: mapSize)
        let values = record.values(words: wordsPerMap)
        var v = 0
        for j in 0..<wordsPerMap {
            var bits = record.kept(j)
            while bits != 0 {
                dense[j << 6 | bits.trailingZeroBitCount] = values[v]
                v += 1
                bits &= bits - 1
            }
        }
    }

    /// Keeps `map` (h×w) of `unit` on `image` if its maximum `peak` exceeds `bound`.
    /// `scratch` holds `wordsPerMap` words.
    mutating func append(unit: Int, image: Int32, peak: Float, map: UnsafePointer<Float>, bound: Float,
                         scratch: UnsafeMutablePointer<UInt64>) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: wordsPerMap) { above in
            hndd_above(map, Int32(mapSize), bound, nil, above.baseAddress!)
            append(unit: unit, image: image, peak: peak, map: map, above: above.baseAddress!, bound: bound, scratch: scratch)
        }
    }

    /// The same, given the positions of `map` above `bound` (bit words, as `hndd_above` sets
    /// them).
    @inline(__always)
    mutating func append(unit: Int, image: Int32, peak: Float, map: UnsafePointer<Float>, above: UnsafePointer<UInt64>,
                         bound: Float, scratch: UnsafeMutablePointer<UInt64>) {
        guard peak > bound else { return }
        makeUnique()
        neighbourhoods(of: above, into: scratch)
        var valueCount = 0
        for j in 0..<wordsPerMap { valueCount += scratch[j].nonzeroBitCount }
        let size = recordBytes(values: valueCount)
        arena.reserve(size)
        let record = arena.base! + arena.used
        write(unit: Int32(unit), image: image, peak: peak, kept: scratch, valueCount: valueCount, bound: bound, at: record, from: map)
        arena.noteRecord(at: arena.used)
        arena.used += size
        arena.count += 1
    }

    /// Writes one record at `record`, kept under `bound`: the header, the kept words, and the
    /// values of `map` (h×w) at the kept positions, in order.
    @inline(__always)
    func write(unit: Int32, image: Int32, peak: Float, kept: UnsafePointer<UInt64>, valueCount: Int, bound: Float,
                       at record: UnsafeMutableRawPointer, from map: UnsafePointer<Float>) {
        for j in 0..<wordsPerMap { record.storeBytes(of: kept[j], toByteOffset: Self.headerBytes + 8 * j, as: UInt64.self) }
        let values = (record + Self.headerBytes + 8 * wordsPerMap).assumingMemoryBound(to: Float.self)
        let shedAt = hndd_gather(map, Int32(mapSize), kept, bound, values)
        writeHeader(unit: unit, image: image, peak: peak, shedAt: shedAt, valueCount: valueCount, at: record)
    }

    @inline(__always)
    private func writeHeader(unit: Int32, image: Int32, peak: Float, shedAt: Float, valueCount: Int, at record: UnsafeMutableRawPointer) {
        record.storeBytes(of: unit, as: Int32.self)
        record.storeBytes(of: image, toByteOffset: 4, as: Int32.self)
        record.storeBytes(of: peak, toByteOffset: 8, as: Float.self)
        record.storeBytes(of: shedAt, toByteOffset: 12, as: Float.self)
        record.storeBytes(of: UInt32(valueCount), toByteOffset: 16, as: UInt32.self)
    }

    /// The positions to keep of `map` (−∞ where unknown) for thresholds above `bound`: those
    /// above it and their 3×3 neighbourhoods, as `wordsPerMap` bit words in `needed`.
    @inline(__always)
    func neededPositions(of map: UnsafePointer<Float>, above bound: Float, into needed: UnsafeMutablePointer<UInt64>) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: wordsPerMap) { above in
            hndd_above(map, Int32(mapSize), bound, nil, above.baseAddress!)
            neighbourhoods(of: above.baseAddress!, into: needed)
        }
    }

    /// The positions `above` (bit words) and their 3×3 neighbourhoods, into `needed`.
    @inline(__always)
    func neighbourhoods(of above: UnsafePointer<UInt64>, into needed: UnsafeMutablePointer<UInt64>) {
        if mapSize <= 64 {
            needed[0] = neighbourhoods(of: above[0])
            return
        }
        let w = width, h = height
        needed.initialize(repeating: 0, count: wordsPerMap)
        for j in 0..<wordsPerMap {
            var bits = above[j]
            while bits != 0 {
                let p = j << 6 | bits.trailingZeroBitCount
                bits &= bits - 1
                let y = p / w, x = p % w
                for ny in max(y - 1, 0)...min(y + 1, h - 1) {
                    for nx in max(x - 1, 0)...min(x + 1, w - 1) {
                        let q = ny * w + nx
                        needed[q >> 6] |= 1 << UInt64(q & 63)
                    }
                }
            }
        }
    }

    /// For a map of at most 64 positions: the positions `above` and their 3×3 neighbourhoods,
    /// dilating with shifts (columns masked so that nothing wraps from one row into the next).
    @inline(__always) func neighbourhoods(of above: UInt64) -> UInt64 {
        let n = mapSize
        let all: UInt64 = n == 64 ? ~0 : (1 << UInt64(n)) - 1
        var kept = above | (above << 1 & notFirstColumn) | (above >> 1 & notLastColumn)
        kept |= kept << UInt64(width) | kept >> UInt64(width)
        return kept & all
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

    /// Whether enough has been added since the last `discard` to make one worth it: half as much
    /// again as it kept, plus `slack` bytes.
    func discardIsDue(slack: Int) -> Bool { arena.used > bytesAfterDiscard + bytesAfterDiscard / 2 + slack }

    /// Drops every map whose maximum no longer exceeds its unit's lower bound (`bounds`, per
    /// unit), and from the others the values no longer needed under the risen bound. In place, in
    /// one sweep: a record is written no later in the arena than it was read from.
    mutating func discard(bounds: [Float]) {
        makeUnique()
        guard let base = arena.base else { return }
        let words = wordsPerMap
        var read = 0, written = 0, kept = 0
        var pieceStarts: [Int] = []
        let end = arena.used
        withUnsafeTemporaryAllocation(of: Float.self, capacity: mapSize) { dense in
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { needed in
            let dense = dense.baseAddress!, needed = needed.baseAddress!
            while read < end {
                let record = Record(pointer: base + read)
                let size = recordBytes(values: record.valueCount)
                defer { read += size }
                let bound = bounds[Int(record.unit)]
                guard record.peak > bound else { continue }
                if kept % arena.recordsPerPiece == 0 { pieceStarts.append(written) }
                kept += 1
                if record.valueCount <= 9 || bound < record.shedAt {
                    // One value's neighbourhood at most, or no kept value fell to the bound:
                    // nothing to shed, only to move.
                    move(from: base + read, to: base + written, bytes: size)
                    written += size
                } else {
                    // The record is read whole (into dense) before it is overwritten.
                    let (unit, image, peak) = (record.unit, record.image, record.peak)
                    expand(record, into: dense)
                    neededPositions(of: dense, above: bound, into: needed)
                    var valueCount = 0
                    for j in 0..<words {
                        needed[j] &= record.kept(j)
                        valueCount += needed[j].nonzeroBitCount
                    }
                    write(unit: unit, image: image, peak: peak, kept: needed, valueCount: valueCount, bound: bound,
                          at: base + written, from: dense)
                    written += recordBytes(values: valueCount)
                }
            }
        }}
        arena.used = written
        arena.count = kept
        arena.pieceStarts = pieceStarts
        arena.releaseUnused()
        bytesAfterDiscard = written
    }

    /// Moves a record towards the arena's start (`to` ≤ `from`), four bytes at a time.
    @inline(__always) private func move(from: UnsafeMutableRawPointer, to: UnsafeMutableRawPointer, bytes: Int) {
        guard to != from else { return }
        let source = from.assumingMemoryBound(to: UInt32.self), target = to.assumingMemoryBound(to: UInt32.self)
        for i in 0..<(bytes >> 2) { target[i] = source[i] }
    }
}
