import CZMQ

/// ZeroMQ's authentication protocol (ZAP, RFC 27): libzmq asks a REP socket bound at
/// `ZAP.endpoint` in the same context whether to admit each peer that completed a CURVE
/// handshake; the handler answers 200 (admit, naming the peer's user id) or 400 (refuse).
public enum ZAP {
    /// Where libzmq sends its requests.
    public static let endpoint = "inproc://zeromq.zap.01"
    public static let version = "1.0"

    /// One request, as a REP socket receives it.
    public struct Request: Sendable, Equatable {
        public var requestID: [UInt8]
        public var domain: String
        /// The peer's IP address (no port).
        public var address: String
        public var identity: [UInt8]
        public var mechanism: String
        /// For CURVE: the client's public key, 32 bytes.
        public var credentials: [[UInt8]]

        /// The client's public key of a CURVE request.
        public var curveKey: CurveKey? {
            guard mechanism == "CURVE", credentials.count == 1 else { return nil }
            return try? CurveKey(bytes: credentials[0])
        }
    }

    /// Parses a request's frames; nil when they are not a ZAP 1.0 request.
    public static func request(_ frames: [[UInt8]]) -> Request? {
        guard frames.count >= 6, String(decoding: frames[0], as: UTF8.self) == version else { return nil }
        func text(_ i: Int) -> String { String(decoding: frames[i], as: UTF8.self) }
        return Request(requestID: frames[1], domain: text(2), address: text(3), identity: frames[4],
                       mechanism: text(5), credentials: Array(frames[6...]))
    }

    /// The reply frames: `userID` becomes the "User-Id" property of the peer's messages.
    public static func reply(to request: Request, admit: Bool, statusText: String, userID: String = "") -> [[UInt8]] {
        [Array(version.utf8), request.requestID, Array((admit ? "200" : "400").utf8), Array(statusText.utf8),
         Array((admit ? userID : "").utf8), []]
    }
}

/// An event of a socket monitor (`zmq_socket_monitor`): frame 0 holds the event number (16
/// bits) and a value (32 bits: a file descriptor, an errno or a protocol error code), in the
/// host's (little-endian) order, frame 1 the socket's endpoint.
public struct ZMQMonitorEvent: Sendable, Equatable {
    public let event: Int32
    public let value: UInt32
    public let endpoint: String

    public init?(_ frames: [[UInt8]]) {
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let f = frames[0]
        event = Int32(UInt16(f[0]) | UInt16(f[1]) << 8)
        value = UInt32(f[2]) | UInt32(f[3]) << 8 | UInt32(f[4]) << 16 | UInt32(f[5]) << 24
        endpoint = String(decoding: frames[1], as: UTF8.self)
    }
}

extension ZMQMonitorEvent {
    /// The events hndd watches on its CURVE sockets.
    public static let accepted = Int32(ZMQ_EVENT_ACCEPTED)
    public static let disconnected = Int32(ZMQ_EVENT_DISCONNECTED)
    public static let handshakeFailedNoDetail = Int32(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    public static let handshakeFailedProtocol = Int32(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
    public static let handshakeFailedAuth = Int32(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    public static let handshakeSucceeded = Int32(ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
    /// The value of a protocol failure where the peer offered another mechanism (no CURVE).
    public static let mechanismMismatch = UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
}

extension ZMQSocket {
    /// Publishes this socket's `events` (a mask of `ZMQ_EVENT_*`) on a PAIR socket bound at
    /// `endpoint` (inproc://…), for another thread to read. Call before binding, so that no
    /// connection goes unseen.
    public func monitor(endpoint: String, events: Int32) throws(WireError) {
        guard zmq_socket_monitor(handle, endpoint, events) == 0 else { throw zmqError("zmq_socket_monitor(\(endpoint))") }
    }
}
