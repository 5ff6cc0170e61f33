/// Where a streaming `ByteWriter` hands its bytes on (a checkpoint file, in HNDDaemon), so that a
/// checkpoint of several large open passes is never held whole in memory: building it whole while
/// three passes were open was most of the daemon's peak memory.
public protocol ByteSink: AnyObject {
    /// Appends `bytes` after everything handed on so far.
    func write(_ bytes: UnsafeRawBufferPointer)
    /// Overwrites bytes handed on earlier, starting `offset` bytes from the beginning (a length
    /// prefix known only once its content was written).
    func overwrite(at offset: Int, with bytes: UnsafeRawBufferPointer)
}

/// Little-endian fixed-width values, length-prefixed arrays and strings, for checkpoints. Holds
/// everything in `bytes`, or, made with a sink, hands its bytes on whenever a megabyte is
/// buffered (the bytes are the same either way).
public struct ByteWriter {
    /// What is written and not yet handed on (everything, without a sink).
    public var bytes: [UInt8] = []
    private let sink: ByteSink?
    /// Bytes handed on to the sink so far.
    private var handedOn = 0
    /// A streaming writer buffers this much before handing it on.
    static let bufferBytes = 1 << 20

    public init() { sink = nil }

    public init(streamingTo sink: ByteSink) {
        self.sink = sink
        bytes.reserveCapacity(Self.bufferBytes)
    }

    /// Bytes written so far, handed on or not.
    public var position: Int { handedOn + bytes.count }

    public mutating func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { append($0) } }
    public mutating func put(_ v: Double) { put(v.bitPattern) }
    public mutating func put(_ v: Float) { put(v.bitPattern) }
    public mutating func put(_ s: String) { put(Array(s.utf8)) }
    /// Arrays are copied as raw memory: every platform Swift runs hndd on is little-endian.
    public mutating func put<T: FixedWidthInteger>(_ a: [T]) {
        put(Int64(a.count))
        a.withUnsafeBytes { append($0) }
    }
    /// A float's memory is its bit pattern: written as raw memory, without a converted copy.
    public mutating func put(_ a: [Float]) {
        put(Int64(a.count))
        a.withUnsafeBytes { append($0) }
    }
    public mutating func put(_ a: [Double]) {
        put(Int64(a.count))
        a.withUnsafeBytes { append($0) }
    }

    /// Writes a length-prefixed byte array whose content `body` writes, the same bytes as
    /// `put(bytes)` without building the content first: the length is filled in afterwards.
    public mutating func putLengthPrefixed(_ body: (inout ByteWriter) -> Void) {
        let start = position
        put(Int64(0))
        body(&self)
        let length = Int64(position - start - MemoryLayout<Int64>.size)
        withUnsafeBytes(of: length.littleEndian) { overwrite(at: start, with: $0) }
    }

    /// Hands the buffered bytes on to the sink (nothing without one).
    public mutating func flush() {
        guard let sink, !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { sink.write($0) }
        handedOn += bytes.count
        bytes.removeAll(keepingCapacity: true)
    }

    /// Writes memory as it is (little-endian values, as everything here).
    mutating func append(_ raw: UnsafeRawBufferPointer) {
        guard let sink else { bytes += raw; return }
        if raw.count >= Self.bufferBytes {
            flush()
            sink.write(raw)
            handedOn += raw.count
            return
        }
        bytes += raw
        if bytes.count >= Self.bufferBytes { flush() }
    }

    /// Bytes are appended whole and handed on whole, so a value written earlier is either all
    /// still buffered or all handed on.
    private mutating func overwrite(at offset: Int, with raw: UnsafeRawBufferPointer) {
        if offset >= handedOn {
            bytes.withUnsafeMutableBytes { buffer in
                UnsafeMutableRawBufferPointer(rebasing: buffer[(offset - handedOn)...].prefix(raw.count)).copyMemory(from: raw)
            }
        } else {
            sink!.overwrite(at: offset, with: raw)
        }
    }
}
