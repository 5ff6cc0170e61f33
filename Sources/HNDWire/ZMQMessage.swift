import CZMQ

/// One ZeroMQ frame, owning a `zmq_msg_t`.
///
/// The `zmq_msg_t` lives on the heap and never moves: libzmq stores small frames inside the
/// struct itself, so a Swift value copy of it would leave a dangling data pointer. Received bytes
/// are read in place (``withUnsafeBytes(_:)``), without a copy. They are only guaranteed to be
/// 8-byte aligned — sometimes less: read them with `loadUnaligned` or `memcpy`.
public final class ZMQMessage {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty frame, e.g. to receive into.
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    /// A frame of `count` uninitialised bytes, to fill through ``withUnsafeMutableBytes(_:)``.
    public init(count: Int) throws(WireError) {
        precondition(count >= 0, "a frame cannot have a negative size")
        pointer = .allocate(capacity: 1)
        guard zmq_msg_init_size(pointer, count) == 0 else {
            let error = zmqError("zmq_msg_init_size(\(count))")
            pointer.deallocate()
            throw error
        }
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws(WireError) {
        try self.init(count: bytes.count)
        if let source = bytes.baseAddress, bytes.count > 0 {
            zmq_msg_data(pointer).copyMemory(from: source, byteCount: bytes.count)
        }
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) throws(WireError) {
        try self.init(count: bytes.count)
        if !bytes.isEmpty {
            bytes.withUnsafeBytes { zmq_msg_data(pointer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    /// The frame's size in bytes.
    public var count: Int { zmq_msg_size(pointer) }

    /// Whether more frames of the same multipart message followed this one when it was received.
    public var hasMore: Bool { zmq_msg_more(pointer) != 0 }

    /// Reads the frame's bytes in place. The buffer is valid only inside `body`.
    public func withUnsafeBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        defer { withExtendedLifetime(self) {} }
        return try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: count))
    }

    /// Writes the frame's bytes in place (before sending). The buffer is valid only inside `body`.
    public func withUnsafeMutableBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        defer { withExtendedLifetime(self) {} }
        return try body(UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: count))
    }

    /// A copy of the frame's bytes.
    public var bytes: [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}

/// The frames of one received multipart message.
///
/// ``ZMQSocket/receive(maxFrames:dontWait:)`` keeps at most `maxFrames` frames and discards the
/// rest, so that a peer sending thousands of frames cannot make us hold them all; ``frameCount``
/// still tells how many arrived.
public struct ZMQMultipart {
    /// The frames kept, in order.
    public var frames: [ZMQMessage]
    /// How many frames the message had, including any discarded beyond `maxFrames`.
    public var frameCount: Int

    public init(frames: [ZMQMessage], frameCount: Int? = nil) {
        self.frames = frames
        self.frameCount = frameCount ?? frames.count
    }

    /// Total bytes of the frames kept.
    public var byteCount: Int { frames.reduce(0) { $0 + $1.count } }
}
