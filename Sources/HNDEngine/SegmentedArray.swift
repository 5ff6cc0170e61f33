/// A growable buffer of trivial values stored in fixed-size segments. Unlike `Array`, growing
/// never copies what is stored: a contiguous array of hundreds of megabytes would, at every
/// doubling, briefly hold the old and the new buffer (three times its size) — the peak memory of
/// a whole pass.
///
/// A reference type without copy-on-write, so that its hot loops carry no uniqueness checks: its
/// owner (`CandidateMaps`) checks once per mutating call and copies with `copy()`.
final class SegmentedBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    /// 2^16 elements per segment: 256 KiB of floats.
    static var segmentShift: Int { 16 }
    static var segmentSize: Int { 1 << segmentShift }

    // Unchecked: every element access would otherwise pay a runtime exclusivity check.
    @exclusivity(unchecked) private var segments: [UnsafeMutablePointer<Element>] = []
    @exclusivity(unchecked) private(set) var count = 0

    init() {}
    init(_ values: [Element]) { for v in values { append(v) } }
    deinit { for segment in segments { segment.deallocate() } }

    func copy() -> SegmentedBuffer {
        let other = SegmentedBuffer()
        for (i, segment) in segments.enumerated() {
            let target = UnsafeMutablePointer<Element>.allocate(capacity: Self.segmentSize)
            target.initialize(from: segment, count: min(Self.segmentSize, count - i << Self.segmentShift))
            other.segments.append(target)
        }
        other.count = count
        return other
    }

    subscript(index: Int) -> Element {
        @inline(__always) get { segments[index >> Self.segmentShift][index & (Self.segmentSize - 1)] }
        @inline(__always) set { segments[index >> Self.segmentShift][index & (Self.segmentSize - 1)] = newValue }
    }

    @inline(__always) func append(_ value: Element) {
        if count == segments.count << Self.segmentShift {
            segments.append(.allocate(capacity: Self.segmentSize))
        }
        segments[count >> Self.segmentShift][count & (Self.segmentSize - 1)] = value
        count += 1
    }

    /// Keeps the first `count` elements and frees the segments after them.
    func truncate(to newCount: Int) {
        precondition(newCount <= count)
        let needed = (newCount + Self.segmentSize - 1) >> Self.segmentShift
        while segments.count > needed { segments.removeLast().deallocate() }
        count = newCount
    }

    var elements: [Element] { (0..<count).map { self[$0] } }
}
