/// Counts of one unit's upsampled pixel values above a rising floor, in several rows at once
/// (one per annotation pattern for |M|, one per concept for |M ∩ L|), binned with fine *relative*
/// resolution as HdrHistogram does: a bin is the sign, the exponent and the top `subBucketBits`
/// mantissa bits of the value, so every bin spans at most 2^−8 ≈ 0.4 % of its value.
///
/// Counting pixels above any threshold T ≥ the floor is then a suffix sum; the one bin holding T
/// is split by linear interpolation. Bins live in pages of one octave each, allocated on first
/// use and freed once the floor has passed them, so memory follows the populated value range.
public struct TailHistogram: Sendable, Equatable {
    public static let subBucketBits = 8
    @usableFromInline static let shift = UInt32(23 - subBucketBits)
    @usableFromInline static let binsPerPage = 1 << subBucketBits
    @usableFromInline static let pageCount = 1 << (32 - Int(shift) - subBucketBits)

    public let rows: Int
    @usableFromInline var storage: PageStore

    /// The pages, each `rows × binsPerPage` counts, row-major: a unit's pixels touch few rows
    /// (its |M| row and the concepts near it), so its working set stays small; malloc'd so the
    /// hot loop works on stable pointers, copied only on write.
    @usableFromInline final class PageStore: @unchecked Sendable {
        let pageLength: Int
        @usableFromInline let pages: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>
        init(pageLength: Int) {
            self.pageLength = pageLength
            pages = .allocate(capacity: TailHistogram.pageCount)
            pages.initialize(repeating: nil, count: TailHistogram.pageCount)
        }
        deinit {
            for p in 0..<TailHistogram.pageCount { pages[p]?.deallocate() }
            pages.deallocate()
        }
        func copy() -> PageStore {
            let other = PageStore(pageLength: pageLength)
            for p in 0..<TailHistogram.pageCount {
                guard let page = pages[p] else { continue }
                let target = UnsafeMutablePointer<UInt32>.allocate(capacity: pageLength)
                target.update(from: page, count: pageLength)
                other.pages[p] = target
            }
            return other
        }
        @usableFromInline func page(_ p: Int) -> UnsafeMutablePointer<UInt32> {
            if let page = pages[p] { return page }
            let page = UnsafeMutablePointer<UInt32>.allocate(capacity: pageLength)
            page.initialize(repeating: 0, count: pageLength)
            pages[p] = page
            return page
        }
    }

    public init(rows: Int) {
        self.rows = rows
        storage = PageStore(pageLength: Self.binsPerPage * rows)
    }

    /// Maps a float to an unsigned key that orders like the float, then drops low mantissa bits.
    @inlinable @inline(__always) static func key(_ v: Float) -> Int {
        let bits = v.bitPattern
        let ordered = (bits & 0x8000_0000) != 0 ? ~bits : bits | 0x8000_0000
        return Int(ordered >> shift)
    }

    /// The smallest float with key `k` (or +∞ past the last key).
    @usableFromInline static func lowerEdge(key k: Int) -> Double {
        if k >= pageCount * binsPerPage { return .infinity }
        let ordered = UInt32(k) << shift
        let bits = (ordered & 0x8000_0000) != 0 ? ordered & 0x7FFF_FFFF : ~ordered
        let v = Float(bitPattern: bits)
        return v.isNaN ? (bits & 0x8000_0000 != 0 ? -.infinity : .infinity) : Double(v)
    }

    /// Records values through stable pointers: the histogram is made unique once, up front.
    public mutating func withRecorder<R>(_ body: (inout Recorder) -> R) -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        var recorder = Recorder(store: storage, rows: rows)
        return body(&recorder)
    }

    public struct Recorder {
        @usableFromInline let store: PageStore
        @usableFromInline let rows: Int
        /// Row 0 of the bin holding `v`; row r of that bin is `result[r * binsPerPage]`.
        @inlinable @inline(__always) public func bin(_ v: Float) -> UnsafeMutablePointer<UInt32> {
            let k = TailHistogram.key(v)
            let page = store.pages[k >> TailHistogram.subBucketBits] ?? store.page(k >> TailHistogram.subBucketBits)
            return page + (k & (TailHistogram.binsPerPage - 1))
        }
    }

    /// Records one value in the given rows (convenient, not for hot loops).
    public mutating func record(_ v: Float, rows selected: [Int]) {
        withRecorder { recorder in
            let bin = recorder.bin(v)
            for row in selected { bin[row * TailHistogram.binsPerPage] &+= 1 }
        }
    }

    /// Frees the pages that lie wholly below `floor`: no threshold can reach them any more.
    public mutating func discard(below floor: Float) {
        guard floor.isFinite else { return }
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        let lastPage = Self.key(floor) >> Self.subBucketBits
        for page in 0..<lastPage {
            storage.pages[page]?.deallocate()
            storage.pages[page] = nil
        }
    }

    /// For every row, the (interpolated) number of recorded values strictly above `threshold`.
    public func countsAbove(_ threshold: Float) -> [Double] {
        var result = [Double](repeating: 0, count: rows)
        let thresholdKey = Self.key(threshold)
        let firstPage = thresholdKey >> Self.subBucketBits
        // Share of the threshold's own bin that lies above it, assuming values spread evenly.
        let lo = Self.lowerEdge(key: thresholdKey), hi = Self.lowerEdge(key: thresholdKey + 1)
        let share = hi > lo && hi.isFinite && lo.isFinite ? max(0, min(1, (hi - Double(threshold)) / (hi - lo))) : 0
        for page in firstPage..<Self.pageCount {
            guard let counts = storage.pages[page] else { continue }
            for bin in 0..<Self.binsPerPage {
                let key = page << Self.subBucketBits | bin
                if key < thresholdKey { continue }
                let weight = key == thresholdKey ? share : 1
                for row in 0..<rows where counts[row * Self.binsPerPage + bin] != 0 {
                    result[row] += weight * Double(counts[row * Self.binsPerPage + bin])
                }
            }
        }
        return result
    }

    /// Adds another histogram's counts (same rows).
    public mutating func merge(_ other: TailHistogram) {
        precondition(other.rows == rows)
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        for p in 0..<Self.pageCount {
            guard let source = other.storage.pages[p] else { continue }
            let target = storage.page(p)
            for i in 0..<storage.pageLength { target[i] &+= source[i] }
        }
    }

    /// Bytes held, for memory accounting.
    public var byteCount: Int {
        (0..<Self.pageCount).reduce(Self.pageCount * 8) { $0 + (storage.pages[$1] == nil ? 0 : storage.pageLength * 4) }
    }

    /// The populated pages as (page, counts) pairs: the whole state, for checkpoints.
    public var pages: [(page: Int, counts: [UInt32])] {
        (0..<Self.pageCount).compactMap { p in
            storage.pages[p].map { (p, Array(UnsafeBufferPointer(start: $0, count: storage.pageLength))) }
        }
    }

    /// Rebuilds a histogram from `pages`.
    public init(rows: Int, pages: [(page: Int, counts: [UInt32])]) {
        self.init(rows: rows)
        for (p, values) in pages {
            precondition(values.count == storage.pageLength)
            let target = storage.page(p)
            for (i, v) in values.enumerated() { target[i] = v }
        }
    }

    public static func == (a: TailHistogram, b: TailHistogram) -> Bool {
        guard a.rows == b.rows else { return false }
        let pa = a.pages, pb = b.pages
        return pa.count == pb.count && zip(pa, pb).allSatisfy { $0.page == $1.page && $0.counts == $1.counts }
    }
}
