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
///
/// A store keeps its values as float16 halves while every value it was given is one exactly —
/// as when a layer's messages are float16 (or bfloat16 in the usual range of activations) —
/// and as floats from the first value that is not: it then widens what it holds, once. The kept
/// values are most of a record, so halves save about a third of the memory of a pass sent in
/// float16; the values and every count are the same either way.
public struct CandidateMaps: Sendable, Equatable {
    public let height: Int, width: Int
    var mapSize: Int { height * width }
    /// Bit words of the "kept positions" mask of one map.
    let wordsPerMap: Int
    /// UInt32 words of a record's presence mask (see `headerBytes`): none when a map has one word.
    let presenceWords: Int
    /// Whether the records' values are float16 halves (else floats): see the type's comment.
    public private(set) var halfValues: Bool

    /// Whether a new store keeps halves: where the process's vector path converts them (F16C or
    /// AVX-512); on the portable path values are floats from the start.
    public static let keepsHalves = hndd_vector_path() != HNDD_PATH_PORTABLE

    /// Record layout, 4-byte aligned: unit (Int32), image (Int32), peak (Float), `shedAt` (Float),
    /// the kept positions, then the kept values (Float, or Float16 in a store of halves, padded to
    /// 4 bytes) in position order. The kept positions of
    /// a map of at most 64 positions are one word, bit p set when position p is kept. A wider
    /// map's record stores only the words that hold a kept position: a presence mask (one UInt32
    /// per 32 words, bit j set when word j is stored), then those words in order: the 3×3
    /// neighbourhoods a map keeps often leave some of its words empty. Words are read and written
    /// unaligned. The value count is not stored: it is the number of kept
    /// positions (the kept set is most of a pass's memory, and every header byte is paid per
    /// record: millions of them). `shedAt` is the smallest kept value above the bound the record
    /// was written under: until a bound reaches it, the record keeps exactly what it needs.
    static let headerBytes = 16
    /// Bytes of a record that stores `storedWords` kept-position words and `values` values.
    func recordBytes(storedWords: Int, values: Int) -> Int {
        Self.headerBytes + (wordsPerMap == 1 ? 8 : 4 * presenceWords + 8 * storedWords) + Self.valueBytes(values, halves: halfValues)
    }
    /// Bytes of `count` values, as floats or halves (padded to 4).
    @inline(__always) static func valueBytes(_ count: Int, halves: Bool) -> Int { halves ? (2 * count + 3) & ~3 : 4 * count }
    /// Bytes of a record keeping the positions `kept` (`wordsPerMap` words).
    @inline(__always)
    func recordBytes(kept: UnsafePointer<UInt64>) -> Int {
        var values = 0, stored = 0
        for j in 0..<wordsPerMap {
            values += kept[j].nonzeroBitCount
            stored += kept[j] != 0 ? 1 : 0
        }
        return recordBytes(storedWords: stored, values: values)
    }

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

        func bytesEqual(_ other: Arena) -> Bool {
            used == other.used && (used == 0 || memcmp(base!, other.base!, used) == 0)
        }

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

    /// `recordsPerPiece`: records a piece holds at most (see `pieces`). `halfValues`: whether to
    /// start with halves (only where the vector path converts them: `keepsHalves`).
    public init(height: Int, width: Int, recordsPerPiece: Int = CandidateMaps.recordsPerPiece,
                halfValues: Bool = CandidateMaps.keepsHalves) {
        precondition(recordsPerPiece > 0)
        precondition(!halfValues || Self.keepsHalves, "halves need a vector path that converts them")
        arena = Arena(recordsPerPiece: recordsPerPiece)
        self.halfValues = halfValues
        self.height = height; self.width = width
        wordsPerMap = (height * width + 63) / 64
        presenceWords = wordsPerMap == 1 ? 0 : (wordsPerMap + 31) / 32
        (notFirstColumn, notLastColumn) = height * width <= 64 ? Self.columnMasks(height: height, width: width) : (0, 0)
    }

    /// The same maps, values and bounds, in the same order, whether as halves or floats.
    public static func == (a: CandidateMaps, b: CandidateMaps) -> Bool {
        guard a.height == b.height, a.width == b.width, a.arena.count == b.arena.count else { return false }
        guard a.halfValues == b.halfValues else { return a.widened().arena.bytesEqual(b.widened().arena) }
        return a.arena.bytesEqual(b.arena)
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
        /// The store's `wordsPerMap`, `presenceWords` and `halfValues`.
        let words: Int, presenceWords: Int, halfValues: Bool

        var unit: Int32 { pointer.load(as: Int32.self) }
        var image: Int32 { pointer.load(fromByteOffset: 4, as: Int32.self) }
        var peak: Float { pointer.load(fromByteOffset: 8, as: Float.self) }
        var shedAt: Float { pointer.load(fromByteOffset: 12, as: Float.self) }

        @inline(__always) private func presence(_ i: Int) -> UInt32 {
            pointer.load(fromByteOffset: CandidateMaps.headerBytes + 4 * i, as: UInt32.self)
        }
        /// The i-th stored kept-position word.
        @inline(__always) private func stored(_ i: Int) -> UInt64 {
            pointer.loadUnaligned(fromByteOffset: CandidateMaps.headerBytes + 4 * presenceWords + 8 * i, as: UInt64.self)
        }
        /// How many kept-position words the record stores.
        @inline(__always) var storedWords: Int {
            guard words > 1 else { return 1 }
            var n = 0
            for i in 0..<presenceWords { n += presence(i).nonzeroBitCount }
            return n
        }
        @inline(__always) var valueCount: Int {
            var n = 0
            for i in 0..<storedWords { n += stored(i).nonzeroBitCount }
            return n
        }
        /// Kept-position word j.
        func kept(_ j: Int) -> UInt64 {
            guard words > 1 else { return stored(0) }
            let mask = presence(j >> 5), bit = UInt32(1) << UInt32(j & 31)
            guard mask & bit != 0 else { return 0 }
            var index = (mask & (bit &- 1)).nonzeroBitCount
            for i in 0..<(j >> 5) { index += presence(i).nonzeroBitCount }
            return stored(index)
        }
        /// The `words` kept-position words, as the count kernel reads them: in place for a map of
        /// one word, else unpacked into `scratch` (room for `words`).
        @inline(__always)
        func keptWords(unpackingInto scratch: UnsafeMutablePointer<UInt64>) -> UnsafeRawPointer {
            guard words > 1 else { return pointer + CandidateMaps.headerBytes }
            var i = 0
            for j in 0..<words {
                if presence(j >> 5) & (UInt32(1) << UInt32(j & 31)) != 0 { scratch[j] = stored(i); i += 1 } else { scratch[j] = 0 }
            }
            return UnsafeRawPointer(scratch)
        }
        /// The bytes of the header and the kept-position words.
        @inline(__always) var keptEnd: Int { CandidateMaps.headerBytes + (words == 1 ? 8 : 4 * presenceWords + 8 * storedWords) }
        /// The kept values as they are stored (floats or halves, 4-byte aligned), in position order.
        var storedValues: UnsafeRawPointer { pointer + keptEnd }
        /// The kept values as floats, in position order: in place, or widened into `scratch`
        /// (room for `valueCount`) from halves.
        @inline(__always)
        func values(wideningInto scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
            guard halfValues else { return storedValues.assumingMemoryBound(to: Float.self) }
            CandidateMaps.widen(storedValues, count: valueCount, into: scratch)
            return UnsafePointer(scratch)
        }
        /// The record's size in the arena.
        @inline(__always) var bytes: Int { keptEnd + CandidateMaps.valueBytes(valueCount, halves: halfValues) }
    }

    @inline(__always) func record(at pointer: UnsafeRawPointer) -> Record {
        Record(pointer: pointer, words: wordsPerMap, presenceWords: presenceWords, halfValues: halfValues)
    }

    /// `count` halves to floats, with the vector path's conversion (a store of halves exists only
    /// where there is one).
    @inline(__always)
    static func widen(_ halves: UnsafeRawPointer, count: Int, into floats: UnsafeMutablePointer<Float>) {
        guard count > 0 else { return }
        let converted = hndd_decode_float16(halves, Int64(count), floats)
        precondition(converted != 0, "a store of halves on a path that cannot convert them")
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
            let record = self.record(at: base + offset)
            body(record)
            offset += record.bytes
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
        withUnsafeTemporaryAllocation(of: Float.self, capacity: mapSize) { scratch in
            expand(record, into: dense, values: record.values(wideningInto: scratch.baseAddress!))
        }
    }

    @inline(__always)
    private func expand(_ record: Record, into dense: UnsafeMutablePointer<Float>, values: UnsafePointer<Float>) {
        dense.update(repeating: -.infinity, count: mapSize)
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
        appendRecord(unit: Int32(unit), image: image, peak: peak, kept: scratch, bound: bound, from: map)
    }

    /// Appends the record of `map` (h×w) keeping the positions `kept`, written under `bound`;
    /// widens the store first if the record's values are not all halves and the store's are.
    @inline(__always)
    mutating func appendRecord(unit: Int32, image: Int32, peak: Float, kept: UnsafePointer<UInt64>, bound: Float,
                               from map: UnsafePointer<Float>) {
        let size = recordBytes(kept: kept)
        arena.reserve(size)
        guard write(unit: unit, image: image, peak: peak, kept: kept, bound: bound, at: arena.base! + arena.used, from: map) != nil else {
            widenValues()
            return appendRecord(unit: unit, image: image, peak: peak, kept: kept, bound: bound, from: map)
        }
        noteAppended(bytes: size)
    }

    /// Counts the record just written at `arena.used`.
    @inline(__always) mutating func noteAppended(bytes: Int) {
        arena.noteRecord(at: arena.used)
        arena.used += bytes
        arena.count += 1
    }

    /// Writes one record at `record`, kept under `bound`: the header, the kept words (those that
    /// hold a kept position, for a map of several), and the values of `map` (h×w) at the kept
    /// positions, in order. Returns its size, `recordBytes(kept:)` — or nil, leaving the record
    /// unfinished, in a store of halves when one of those values is not a half.
    @discardableResult @inline(__always)
    func write(unit: Int32, image: Int32, peak: Float, kept: UnsafePointer<UInt64>, bound: Float,
               at record: UnsafeMutableRawPointer, from map: UnsafePointer<Float>) -> Int? {
        var offset = Self.headerBytes
        if wordsPerMap == 1 {
            record.storeBytes(of: kept[0], toByteOffset: offset, as: UInt64.self)
            offset += 8
        } else {
            let words = record + offset
            offset += 4 * presenceWords
            for i in 0..<presenceWords { words.storeBytes(of: UInt32(0), toByteOffset: 4 * i, as: UInt32.self) }
            for j in 0..<wordsPerMap where kept[j] != 0 {
                let mask = words.load(fromByteOffset: 4 * (j >> 5), as: UInt32.self)
                words.storeBytes(of: mask | UInt32(1) << UInt32(j & 31), toByteOffset: 4 * (j >> 5), as: UInt32.self)
                record.storeBytes(of: kept[j], toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
        }
        var valueCount = 0
        for j in 0..<wordsPerMap { valueCount += kept[j].nonzeroBitCount }
        guard let shedAt = writeValues(valueCount, of: map, kept: kept, bound: bound, at: record + offset) else { return nil }
        record.storeBytes(of: unit, as: Int32.self)
        record.storeBytes(of: image, toByteOffset: 4, as: Int32.self)
        record.storeBytes(of: peak, toByteOffset: 8, as: Float.self)
        record.storeBytes(of: shedAt, toByteOffset: 12, as: Float.self)
        return offset + Self.valueBytes(valueCount, halves: halfValues)
    }

    /// Writes the `count` values of `map` at the positions `kept` at `values`, as the store keeps
    /// them, and returns the smallest of them above `bound` (`shedAt`); nil, in a store of halves,
    /// when one of them is not a half.
    @inline(__always)
    private func writeValues(_ count: Int, of map: UnsafePointer<Float>, kept: UnsafePointer<UInt64>, bound: Float,
                             at values: UnsafeMutableRawPointer) -> Float? {
        guard halfValues else {
            return hndd_gather(map, Int32(mapSize), kept, bound, values.assumingMemoryBound(to: Float.self))
        }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: mapSize) { gathered -> Float? in
            let shedAt = hndd_gather(map, Int32(mapSize), kept, bound, gathered.baseAddress!)
            let halves = values.assumingMemoryBound(to: UInt16.self)
            guard hndd_encode_float16_exact(gathered.baseAddress!, Int64(count), halves) != 0 else { return nil }
            if count & 1 != 0 { halves[count] = 0 } // the padding, so that equal stores are equal bytes
            return shedAt
        }
    }

    /// Rewrites every record with its values as floats, and keeps floats from then on: the
    /// store was given a value that is not a half. Once per store at most; it holds the old
    /// records and the new ones for its length.
    mutating func widenValues() {
        guard halfValues else { return }
        self = widened()
    }

    /// This store with its values as floats.
    func widened() -> CandidateMaps {
        guard halfValues else { return self }
        var wide = CandidateMaps(height: height, width: width, recordsPerPiece: arena.recordsPerPiece, halfValues: false)
        wide.arena.reserve(arena.used * 2)
        forEach { wide.appendWidened($0) }
        wide.bytesAfterDiscard = wide.arena.used
        return wide
    }

    /// Appends `record` of a store of halves, the same but its values as floats, to this store of
    /// floats (the header, `shedAt` included, and the kept words are copied as they are).
    mutating func appendWidened(_ record: Record) {
        let kept = record.keptEnd, count = record.valueCount, size = kept + 4 * count
        arena.reserve(size)
        let target = arena.base! + arena.used
        target.copyMemory(from: record.pointer, byteCount: kept)
        Self.widen(record.storedValues, count: count, into: (target + kept).assumingMemoryBound(to: Float.self))
        noteAppended(bytes: size)
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
                let record = self.record(at: base + read)
                let size = record.bytes
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
                    for j in 0..<words { needed[j] &= record.kept(j) }
                    // Its values are the record's own: as the store keeps them, whatever it keeps.
                    written += write(unit: unit, image: image, peak: peak, kept: needed, bound: bound, at: base + written, from: dense)!
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
