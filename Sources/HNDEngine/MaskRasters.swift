/// The raster masks of a version-2 dictionary (docs/1-dictionary.md `/images/masks`): every (image, concept)
/// mask as its runs of set pixels, row by row. Runs rather than bits: the paper's dictionary holds
/// 1.5 GB of packed bits at S = 112, and a few tens of MB of runs.
public struct MaskRasters: Sendable, Equatable {
    /// Columns `lo ..< hi` of grid row `row` are set.
    public struct Run: Sendable, Equatable, Hashable {
        public var row: UInt16, lo: UInt16, hi: UInt16
        public init(row: Int, lo: Int, hi: Int) {
            self.row = UInt16(row); self.lo = UInt16(lo); self.hi = UInt16(hi)
        }
    }

    /// S: masks are S×S.
    public let size: Int
    public let conceptCount: Int
    /// The images in parts, as they were read: appending a part copies nothing (at the paper's
    /// size the runs are tens of MB, which growing one array would hold twice for a while).
    private var parts: [Part] = []
    public private(set) var imageCount = 0

    /// Images `first ..< first + count`: mask (first + i, c) is
    /// `runs[maskStart[i·L + c] ..< maskStart[i·L + c + 1]]`, by row, then column.
    struct Part: Sendable {
        var first = 0
        var maskStart: [UInt32] = [0]
        var runs: [Run] = []
    }

    /// Bytes of one packed row: ⌈S/8⌉.
    public var bytesPerRow: Int { (size + 7) / 8 }
    /// Number of runs of every mask.
    public var runCount: Int { parts.reduce(0) { $0 + $1.runs.count } }

    /// No images yet; append them in order.
    public init(size: Int, conceptCount: Int) {
        precondition(size > 0 && size <= Int(UInt16.max) && conceptCount > 0)
        self.size = size
        self.conceptCount = conceptCount
    }

    /// The runs of concept `c`'s mask on image `n`.
    public func runs(image n: Int, concept c: Int) -> ArraySlice<Run> {
        let part = parts[partIndex(ofImage: n)]
        let m = (n - part.first) * conceptCount + c
        return part.runs[Int(part.maskStart[m])..<Int(part.maskStart[m + 1])]
    }

    private func partIndex(ofImage n: Int) -> Int {
        precondition(n >= 0 && n < imageCount, "image \(n) of \(imageCount)")
        var lo = 0, hi = parts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if parts[mid].first <= n { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Number of set pixels of mask (n, c).
    public func area(image n: Int, concept c: Int) -> Int {
        runs(image: n, concept: c).reduce(0) { $0 + Int($1.hi) - Int($1.lo) }
    }

    /// Appends the next mask (image by image, concept by concept), given as its runs in order.
    public mutating func appendMask<S: Sequence>(_ maskRuns: S) where S.Element == Run {
        let k = lastPart()
        parts[k].runs.append(contentsOf: maskRuns)
        endMask(k)
    }

    /// The part masks are appended to.
    private mutating func lastPart() -> Int {
        if parts.isEmpty { parts.append(Part(first: imageCount)) }
        return parts.count - 1
    }

    /// Ends the mask whose runs part `k` received last.
    private mutating func endMask(_ k: Int) {
        precondition(parts[k].runs.count <= Int(UInt32.max), "too many runs in one part")
        parts[k].maskStart.append(UInt32(parts[k].runs.count))
        if (parts[k].maskStart.count - 1) % conceptCount == 0 { imageCount += 1 }
    }

    /// Appends the masks of the images of `other` after those already here (their runs are not
    /// copied, only held).
    public mutating func append(_ other: MaskRasters) {
        precondition(other.size == size && other.conceptCount == conceptCount && isWholeImages)
        for var part in other.parts where part.maskStart.count > 1 {
            part.first += imageCount
            parts.append(part)
        }
        imageCount += other.imageCount
    }

    /// Copies each part's arrays to storage of their size: appending leaves up to half of it
    /// unused.
    public mutating func shrinkToFit() {
        for k in parts.indices {
            parts[k].runs = Array(parts[k].runs[...])
            parts[k].maskStart = Array(parts[k].maskStart[...])
        }
    }

    /// Whether every image appended so far has all its concepts' masks.
    private var isWholeImages: Bool { parts.last.map { ($0.maskStart.count - 1) % conceptCount == 0 } ?? true }

    public static func == (a: MaskRasters, b: MaskRasters) -> Bool {
        guard a.size == b.size, a.conceptCount == b.conceptCount, a.imageCount == b.imageCount else { return false }
        for n in 0..<a.imageCount {
            for c in 0..<a.conceptCount where a.runs(image: n, concept: c) != b.runs(image: n, concept: c) { return false }
        }
        return true
    }

    /// Every mask's runs in order, hashed (FNV-1a): the same for the same masks however they were
    /// read (a checkpoint's fingerprint of its dictionary).
    public var fingerprint: UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ value: UInt64) { hash = (hash ^ value) &* 0x100_0000_01B3 }
        for part in parts {
            for m in 0..<(part.maskStart.count - 1) {
                mix(UInt64(part.maskStart[m + 1] - part.maskStart[m]))
                for run in part.runs[Int(part.maskStart[m])..<Int(part.maskStart[m + 1])] {
                    mix(UInt64(run.row) << 32 | UInt64(run.lo) << 16 | UInt64(run.hi))
                }
            }
        }
        return hash
    }

    /// Appends one packed mask (S rows of ⌈S/8⌉ bytes, docs/1-dictionary.md's bit order: pixel j is bit
    /// 7 − (j mod 8) of byte ⌊j/8⌋). Returns false, appending nothing, when a padding bit (a
    /// column ≥ S) is set.
    public mutating func appendPacked(_ mask: UnsafePointer<UInt8>) -> Bool {
        let rowBytes = bytesPerRow, padding = rowBytes * 8 - size
        let k = lastPart(), before = parts[k].runs.count
        // Most masks are empty: test whole words first.
        if !Self.isZero(mask, count: size * rowBytes) {
            for row in 0..<size {
                let bytes = mask + row * rowBytes
                // An ellipse covers a few rows of the grid: skip the empty ones a word at a time.
                if Self.isZero(bytes, count: rowBytes) { continue }
                if padding > 0, bytes[rowBytes - 1] & UInt8((1 << padding) - 1) != 0 {
                    parts[k].runs.removeSubrange(before...)
                    return false
                }
                Self.appendRuns(ofPackedRow: bytes, bytes: rowBytes, row: row, into: &parts[k].runs)
            }
        }
        endMask(k)
        return true
    }

    /// Whether `count` bytes are all zero.
    @inline(__always) static func isZero(_ bytes: UnsafePointer<UInt8>, count: Int) -> Bool {
        var i = 0, any: UInt64 = 0
        let raw = UnsafeRawPointer(bytes)
        while i + 8 <= count {
            any |= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count { any |= UInt64(bytes[i]); i += 1 }
        return any == 0
    }

    /// The runs of one packed row (padding bits known to be clear), 64 columns at a time: each
    /// run costs two leading-zero counts, not a test per pixel.
    static func appendRuns(ofPackedRow bytes: UnsafePointer<UInt8>, bytes count: Int, row: Int, into runs: inout [Run]) {
        var runStart = -1
        for base in stride(from: 0, to: count, by: 8) {
            // Columns base·8 ..< base·8 + 64, column base·8 in the top bit (docs/1-dictionary.md's bit order).
            var word: UInt64 = 0
            for b in 0..<8 { word = word << 8 | UInt64(base + b < count ? bytes[base + b] : 0) }
            var position = 0 // next bit of the word to look at, from the top
            while position < 64 {
                if runStart < 0 {
                    let rest = word << UInt64(position)
                    if rest == 0 { break }
                    position += rest.leadingZeroBitCount
                    runStart = base * 8 + position
                } else {
                    let rest = ~word << UInt64(position)
                    if rest == 0 { break } // the run goes on into the next word
                    position += rest.leadingZeroBitCount
                    runs.append(Run(row: row, lo: runStart, hi: base * 8 + position))
                    runStart = -1
                }
            }
        }
        if runStart >= 0 { runs.append(Run(row: row, lo: runStart, hi: count * 8)) }
    }

    /// Mask (n, c) as a dense S×S bitmap, row-major (the report's outlines, tests).
    public func bitmap(image n: Int, concept c: Int) -> [Bool] {
        var pixels = [Bool](repeating: false, count: size * size)
        for run in runs(image: n, concept: c) {
            for col in Int(run.lo)..<Int(run.hi) { pixels[Int(run.row) * size + col] = true }
        }
        return pixels
    }

    /// Masks built from dense bitmaps ([N, L, S, S] row-major), for tests and in-memory dictionaries.
    public init(size: Int, conceptCount: Int, bitmaps: [Bool]) {
        self.init(size: size, conceptCount: conceptCount)
        precondition(bitmaps.count % (size * size * conceptCount) == 0)
        for mask in 0..<(bitmaps.count / (size * size)) {
            var maskRuns: [Run] = []
            for row in 0..<size {
                var col = 0
                while col < size {
                    guard bitmaps[(mask * size + row) * size + col] else { col += 1; continue }
                    let lo = col
                    while col < size, bitmaps[(mask * size + row) * size + col] { col += 1 }
                    maskRuns.append(Run(row: row, lo: lo, hi: col))
                }
            }
            appendMask(maskRuns)
        }
    }
}
