import CZMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The ZeroMQ socket patterns hndd uses.
public enum ZMQSocketType: Sendable {
    case push, pull, pub, sub, xpub, xsub, req, rep, dealer, router, pair

    var rawValue: Int32 {
        switch self {
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .pub: return ZMQ_PUB
        case .sub: return ZMQ_SUB
        case .xpub: return ZMQ_XPUB
        case .xsub: return ZMQ_XSUB
        case .req: return ZMQ_REQ
        case .rep: return ZMQ_REP
        case .dealer: return ZMQ_DEALER
        case .router: return ZMQ_ROUTER
        case .pair: return ZMQ_PAIR
        }
    }
}

/// A ZeroMQ socket, closed when released. Like libzmq sockets, it must be used by one thread at
/// a time: create it in the thread that uses it (the context may be shared).
public final class ZMQSocket {
    public let context: ZMQContext
    public let type: ZMQSocketType
    let handle: UnsafeMutableRawPointer

    public init(_ context: ZMQContext, type: ZMQSocketType) throws(WireError) {
        guard let handle = zmq_socket(context.handle, type.rawValue) else {
            throw zmqError("zmq_socket(\(type))")
        }
        self.context = context
        self.type = type
        self.handle = handle
    }

    deinit {
        zmq_close(handle)
    }

    // MARK: Endpoints

    public func bind(_ endpoint: String) throws(WireError) {
        try checkIPCPathLength(endpoint)
        guard zmq_bind(handle, endpoint) == 0 else { throw zmqError("zmq_bind(\(endpoint))") }
    }

    public func connect(_ endpoint: String) throws(WireError) {
        try checkIPCPathLength(endpoint)
        guard zmq_connect(handle, endpoint) == 0 else { throw zmqError("zmq_connect(\(endpoint))") }
    }

    public func unbind(_ endpoint: String) throws(WireError) {
        guard zmq_unbind(handle, endpoint) == 0 else { throw zmqError("zmq_unbind(\(endpoint))") }
    }

    public func disconnect(_ endpoint: String) throws(WireError) {
        guard zmq_disconnect(handle, endpoint) == 0 else { throw zmqError("zmq_disconnect(\(endpoint))") }
    }

    /// The endpoint last bound, with wildcards resolved (e.g. the port of `tcp://127.0.0.1:*`).
    public var lastEndpoint: String {
        get throws(WireError) {
            var buffer = [CChar](repeating: 0, count: 1024)
            var size = buffer.count
            guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
                throw zmqError("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
            }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// libzmq reports an over-long ipc path only as ENAMETOOLONG; say which path and the limit.
    private func checkIPCPathLength(_ endpoint: String) throws(WireError) {
        let prefix = "ipc://"
        guard endpoint.hasPrefix(prefix) else { return }
        let path = endpoint.dropFirst(prefix.count)
        if path.utf8.count > Endpoints.maximumIPCPathLength {
            throw .endpointPathTooLong(endpoint: endpoint, limit: Endpoints.maximumIPCPathLength)
        }
    }

    // MARK: Options

    /// How long, in milliseconds, unsent messages are kept after close (-1 forever, 0 drop).
    public var linger: Int32 {
        get throws(WireError) { try intOption(ZMQ_LINGER, "ZMQ_LINGER") }
    }
    public func setLinger(milliseconds: Int32) throws(WireError) {
        try setIntOption(ZMQ_LINGER, "ZMQ_LINGER", milliseconds)
    }

    /// Messages queued for sending per peer before sends block or fail (0 = unlimited).
    public var sendHighWaterMark: Int32 {
        get throws(WireError) { try intOption(ZMQ_SNDHWM, "ZMQ_SNDHWM") }
    }
    public func setSendHighWaterMark(_ messages: Int32) throws(WireError) {
        try setIntOption(ZMQ_SNDHWM, "ZMQ_SNDHWM", messages)
    }

    /// Messages queued on receipt per peer before the peer is pushed back (0 = unlimited).
    public var receiveHighWaterMark: Int32 {
        get throws(WireError) { try intOption(ZMQ_RCVHWM, "ZMQ_RCVHWM") }
    }
    public func setReceiveHighWaterMark(_ messages: Int32) throws(WireError) {
        try setIntOption(ZMQ_RCVHWM, "ZMQ_RCVHWM", messages)
    }

    /// Largest frame accepted from a peer, in bytes (-1 unlimited). A peer sending more is
    /// disconnected by libzmq; the oversized frame never reaches the application.
    public var maxMessageSize: Int64 {
        get throws(WireError) {
            var value: Int64 = 0
            var size = MemoryLayout<Int64>.size
            guard zmq_getsockopt(handle, ZMQ_MAXMSGSIZE, &value, &size) == 0 else {
                throw zmqError("zmq_getsockopt(ZMQ_MAXMSGSIZE)")
            }
            return value
        }
    }
    public func setMaxMessageSize(bytes: Int64) throws(WireError) {
        var value = bytes
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else {
            throw zmqError("zmq_setsockopt(ZMQ_MAXMSGSIZE, \(bytes))")
        }
    }

    /// How long a receive waits, in milliseconds, before returning nil (-1 forever).
    public var receiveTimeout: Int32 {
        get throws(WireError) { try intOption(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO") }
    }
    public func setReceiveTimeout(milliseconds: Int32) throws(WireError) {
        try setIntOption(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO", milliseconds)
    }

    /// How long a send waits, in milliseconds, before returning false (-1 forever).
    public var sendTimeout: Int32 {
        get throws(WireError) { try intOption(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO") }
    }
    public func setSendTimeout(milliseconds: Int32) throws(WireError) {
        try setIntOption(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO", milliseconds)
    }

    /// Queue messages only to completed connections (so nothing piles up for an absent peer).
    public func setImmediate(_ enabled: Bool) throws(WireError) {
        try setIntOption(ZMQ_IMMEDIATE, "ZMQ_IMMEDIATE", enabled ? 1 : 0)
    }

    /// SUB sockets: receive messages whose first frame starts with `prefix` (empty: everything).
    public func subscribe(_ prefix: [UInt8]) throws(WireError) {
        try setBytesOption(ZMQ_SUBSCRIBE, "ZMQ_SUBSCRIBE", prefix)
    }

    public func unsubscribe(_ prefix: [UInt8]) throws(WireError) {
        try setBytesOption(ZMQ_UNSUBSCRIBE, "ZMQ_UNSUBSCRIBE", prefix)
    }

    /// Sets an integer option not wrapped above, by its `ZMQ_*` number.
    public func setIntOption(_ option: Int32, _ name: String, _ value: Int32) throws(WireError) {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw zmqError("zmq_setsockopt(\(name), \(value))")
        }
    }

    public func intOption(_ option: Int32, _ name: String) throws(WireError) -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(handle, option, &value, &size) == 0 else {
            throw zmqError("zmq_getsockopt(\(name))")
        }
        return value
    }

    /// Lets the socket act on what ZeroMQ's I/O thread told it: peers that came or left,
    /// subscriptions, pipes to close after an `unbind`. A socket does that only inside its own
    /// calls, so one that merely sends does it only when it sends — and an idle publish socket
    /// would keep an unbound endpoint's subscribers half-closed, neither served nor told to
    /// reconnect, until its next message (which they then miss). Reading `ZMQ_EVENTS` does it.
    public func processPendingCommands() throws(WireError) {
        _ = try intOption(ZMQ_EVENTS, "ZMQ_EVENTS")
    }

    private func setBytesOption(_ option: Int32, _ name: String, _ bytes: [UInt8]) throws(WireError) {
        let status = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard status == 0 else { throw zmqError("zmq_setsockopt(\(name))") }
    }

    // MARK: Sending

    /// Sends a multipart message whose frames are copied from `frames`.
    /// - Returns: false if the message could not be queued: with `dontWait`, because the high-water
    ///   mark is reached or no peer is connected; otherwise when the send timeout expired or a
    ///   signal interrupted the wait. ZeroMQ delivers all frames of a message or none.
    @discardableResult
    public func send(_ frames: [UnsafeRawBufferPointer], dontWait: Bool = false) throws(WireError) -> Bool {
        precondition(!frames.isEmpty, "a ZeroMQ message has at least one frame")
        for (index, frame) in frames.enumerated() {
            guard try sendFrame(frame, index: index, of: frames.count, dontWait: dontWait) else { return false }
        }
        return true
    }

    /// Sends a multipart message of byte arrays (copied into libzmq), as the buffer variant does.
    @discardableResult
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws(WireError) -> Bool {
        precondition(!frames.isEmpty, "a ZeroMQ message has at least one frame")
        for (index, frame) in frames.enumerated() {
            // Array.withUnsafeBytes rethrows untyped errors: carry ours out in a Result.
            let sent = frame.withUnsafeBytes { bytes in
                Result { () throws(WireError) -> Bool in
                    try sendFrame(bytes, index: index, of: frames.count, dontWait: dontWait)
                }
            }
            guard try sent.get() else { return false }
        }
        return true
    }

    /// Sends one frame of a multipart message, copying it. False: the first frame was not queued.
    private func sendFrame(
        _ frame: UnsafeRawBufferPointer, index: Int, of frameCount: Int, dontWait: Bool
    ) throws(WireError) -> Bool {
        var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
        if index < frameCount - 1 { flags |= ZMQ_SNDMORE }
        while zmq_send(handle, frame.baseAddress, frame.count, flags) < 0 {
            let code = zmq_errno()
            // Later frames of a message are always accepted once the first one was.
            if index == 0 && (code == EAGAIN || code == EINTR) { return false }
            if code == EINTR { continue }
            throw zmqError("zmq_send(frame \(index) of \(frameCount))")
        }
        return true
    }

    /// Sends frames without copying their bytes: their content moves to libzmq and each message
    /// is left empty.
    @discardableResult
    public func send(_ frames: [ZMQMessage], dontWait: Bool = false) throws(WireError) -> Bool {
        precondition(!frames.isEmpty, "a ZeroMQ message has at least one frame")
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
            if index < frames.count - 1 { flags |= ZMQ_SNDMORE }
            while zmq_msg_send(frame.pointer, handle, flags) < 0 {
                let code = zmq_errno()
                if index == 0 && (code == EAGAIN || code == EINTR) { return false }
                if code == EINTR { continue }
                throw zmqError("zmq_msg_send(frame \(index) of \(frames.count))")
            }
        }
        return true
    }

    // MARK: Receiving

    /// Receives one multipart message.
    /// - Parameters:
    ///   - maxFrames: frames beyond this many are read and discarded (counted in `frameCount`).
    ///   - dontWait: return nil at once if no message is waiting.
    /// - Returns: nil when no message arrived within the receive timeout, or when a signal
    ///   interrupted the wait (so the caller can check whether it should stop).
    public func receive(maxFrames: Int = 16, dontWait: Bool = false) throws(WireError) -> ZMQMultipart? {
        precondition(maxFrames >= 1, "maxFrames must be at least 1")
        var frames: [ZMQMessage] = []
        var frameCount = 0
        var more = true
        while more {
            let frame = ZMQMessage()
            let flags: Int32 = (dontWait || frameCount > 0) ? ZMQ_DONTWAIT : 0
            while zmq_msg_recv(frame.pointer, handle, flags) < 0 {
                let code = zmq_errno()
                if frameCount == 0 && (code == EAGAIN || code == EINTR) { return nil }
                // The rest of a message arrives with its first frame; only a signal can delay it.
                if code == EINTR { continue }
                throw zmqError("zmq_msg_recv(frame \(frameCount))")
            }
            frameCount += 1
            more = frame.hasMore
            if frames.count < maxFrames { frames.append(frame) }
        }
        return ZMQMultipart(frames: frames, frameCount: frameCount)
    }
}

/// What to wait for on a socket in ``ZMQPoll/wait(_:timeoutMilliseconds:)``.
public struct ZMQPollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// A message can be received without blocking.
    public static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking.
    public static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waiting on several sockets at once (one thread, like the sockets themselves).
public enum ZMQPoll {
    /// Waits until one of the sockets is ready for the requested events, or the timeout passes.
    /// - Parameter timeoutMilliseconds: -1 waits forever, 0 returns at once.
    /// - Returns: for each item, the events that are ready (empty on timeout or on a signal).
    public static func wait(
        _ items: [(socket: ZMQSocket, events: ZMQPollEvents)], timeoutMilliseconds: Int
    ) throws(WireError) -> [ZMQPollEvents] {
        var pollItems = items.map { item in
            zmq_pollitem_t(socket: item.socket.handle, fd: 0, events: item.events.rawValue, revents: 0)
        }
        let status = withExtendedLifetime(items) {
            zmq_poll(&pollItems, Int32(pollItems.count), timeoutMilliseconds)
        }
        if status < 0 {
            if zmq_errno() == EINTR { return Array(repeating: [], count: items.count) }
            throw zmqError("zmq_poll")
        }
        return pollItems.map { ZMQPollEvents(rawValue: $0.revents) }
    }

    /// Which of `sockets` have a message waiting, after waiting at most `timeoutMilliseconds`.
    public static func readable(_ sockets: [ZMQSocket], timeoutMilliseconds: Int) throws(WireError) -> [Bool] {
        try wait(sockets.map { ($0, ZMQPollEvents.readable) }, timeoutMilliseconds: timeoutMilliseconds)
            .map { $0.contains(.readable) }
    }
}
