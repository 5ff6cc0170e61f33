/// A growable array of trivial values stored in fixed-size segments. Unlike `Array`, growing
/// never copies what is stored: a contiguous array of hundreds of megabytes would, at every
/// doubling, briefly hold the old and the new buffer (three times its size) — the peak memory of
/// a whole pass. Copy-on-write like the standard collections.
struct SegmentedArray<Element: BitwiseCopyable>: Sendable {
    /// 2^16 elements per segment: 256 KiB of floats.
    static var segmentShift: Int { 16 }
    static var segmentSize: Int { 1 << segmentShift }

    final class Storage: @unchecked Sendable {
        var segments: [UnsafeMutablePointer<Element>] = []
        var count = 0

        init() {}
        deinit { for segment in segments { segment.deallocate() } }

        func copy() -> Storage {
            let other = Storage()
            for (i, segment) in segments.enumerated() {
                let target = UnsafeMutablePointer<Element>.allocate(capacity: SegmentedArray.segmentSize)
                target.initialize(from: segment, count: min(SegmentedArray.segmentSize, count - i << SegmentedArray.segmentShift))
                other.segments.append(target)
            }
            other.count = count
            return other
        }
    }

    private var storage = Storage()

    init() {}

    var count: Int { storage.count }
    var isEmpty: Bool { storage.count == 0 }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    subscript(index: Int) -> Element {
        @inline(__always) get { storage.segments[index >> Self.segmentShift][index & (Self.segmentSize - 1)] }
        @inline(__always) set {
            makeUnique()
            storage.segments[index >> Self.segmentShift][index & (Self.segmentSize - 1)] = newValue
        }
    }

    mutating func append(_ value: Element) {
        makeUnique()
        let s = storage
        if s.count == s.segments.count << Self.segmentShift {
            s.segments.append(.allocate(capacity: Self.segmentSize))
        }
        s.segments[s.count >> Self.segmentShift][s.count & (Self.segmentSize - 1)] = value
        s.count += 1
    }

    mutating func append(contentsOf values: some Sequence<Element>) {
        for v in values { append(v) }
    }

    /// Keeps the first `count` elements and frees the segments after them.
    mutating func truncate(to count: Int) {
        precondition(count <= storage.count)
        makeUnique()
        let s = storage
        let needed = (count + Self.segmentSize - 1) >> Self.segmentShift
        while s.segments.count > needed { s.segments.removeLast().deallocate() }
        s.count = count
    }

    var elements: [Element] { (0..<count).map { self[$0] } }

    init(_ values: [Element]) {
        for v in values { append(v) }
    }
}

extension SegmentedArray: Equatable where Element: Equatable {
    static func == (a: Self, b: Self) -> Bool {
        a.count == b.count && (0..<a.count).allSatisfy { a[$0] == b[$0] }
    }
}
