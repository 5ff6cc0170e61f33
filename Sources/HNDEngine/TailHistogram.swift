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
    /// Start of each page in `counts`, or −1 when the page holds nothing.
    @usableFromInline var pageStart: [Int32]
    /// Pages, each `binsPerPage × rows`, bin-major so one pixel's rows share cache lines.
    @usableFromInline var counts: [UInt32]
    @usableFromInline var freePages: [Int32]

    public init(rows: Int) {
        self.rows = rows
        pageStart = [Int32](repeating: -1, count: Self.pageCount)
        counts = []
        freePages = []
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

    /// Index in `counts` of row 0 of the bin holding `v`, allocating its page if needed.
    @inlinable @inline(__always) public mutating func binStart(_ v: Float) -> Int {
        let k = Self.key(v)
        let page = k >> Self.subBucketBits
        var start = pageStart[page]
        if start < 0 { start = allocatePage(page) }
        return Int(start) + (k & (Self.binsPerPage - 1)) * rows
    }

    @inlinable @inline(__always) public mutating func increment(at index: Int) {
        counts[index] &+= 1
    }

    @usableFromInline mutating func allocatePage(_ page: Int) -> Int32 {
        let start: Int32
        if let reused = freePages.popLast() {
            start = reused
            for i in Int(start)..<(Int(start) + Self.binsPerPage * rows) { counts[i] = 0 }
        } else {
            start = Int32(counts.count)
            counts.append(contentsOf: repeatElement(0, count: Self.binsPerPage * rows))
        }
        pageStart[page] = start
        return start
    }

    /// Frees the pages that lie wholly below `floor`: no threshold can reach them any more.
    public mutating func discard(below floor: Float) {
        guard floor.isFinite else { return }
        let lastPage = Self.key(floor) >> Self.subBucketBits
        for page in 0..<lastPage where pageStart[page] >= 0 {
            freePages.append(pageStart[page])
            pageStart[page] = -1
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
        for page in firstPage..<Self.pageCount where pageStart[page] >= 0 {
            let start = Int(pageStart[page])
            for bin in 0..<Self.binsPerPage {
                let key = page << Self.subBucketBits | bin
                if key < thresholdKey { continue }
                let weight = key == thresholdKey ? share : 1
                let base = start + bin * rows
                for row in 0..<rows where counts[base + row] != 0 {
                    result[row] += weight * Double(counts[base + row])
                }
            }
        }
        return result
    }

    /// Adds another histogram's counts (same rows).
    public mutating func merge(_ other: TailHistogram) {
        precondition(other.rows == rows)
        for page in 0..<Self.pageCount where other.pageStart[page] >= 0 {
            let source = Int(other.pageStart[page])
            let target = Int(pageStart[page] >= 0 ? pageStart[page] : allocatePage(page))
            for i in 0..<(Self.binsPerPage * rows) { counts[target + i] &+= other.counts[source + i] }
        }
    }

    /// Bytes held, for memory accounting.
    public var byteCount: Int { counts.capacity * 4 + pageStart.count * 4 }

    /// The populated pages as (page, counts) pairs: the whole state, for checkpoints.
    public var pages: [(page: Int, counts: ArraySlice<UInt32>)] {
        (0..<Self.pageCount).compactMap { page in
            guard pageStart[page] >= 0 else { return nil }
            let start = Int(pageStart[page])
            return (page, counts[start..<(start + Self.binsPerPage * rows)])
        }
    }

    public static var pageSize: Int { binsPerPage }

    /// Rebuilds a histogram from `pages`.
    public init(rows: Int, pages: [(page: Int, counts: ArraySlice<UInt32>)]) {
        self.init(rows: rows)
        for (page, values) in pages {
            let start = Int(allocatePage(page))
            for (i, v) in values.enumerated() { counts[start + i] = v }
        }
    }

    public static func == (a: TailHistogram, b: TailHistogram) -> Bool {
        guard a.rows == b.rows else { return false }
        let pa = a.pages, pb = b.pages
        return pa.count == pb.count && zip(pa, pb).allSatisfy { $0.page == $1.page && $0.counts.elementsEqual($1.counts) }
    }
}
