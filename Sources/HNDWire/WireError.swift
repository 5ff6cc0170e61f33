/// Failures of the transport layer: ZeroMQ calls, endpoints, and protocol messages other than
/// ingest batches (those are ``BatchRejection``s, counted by reason).
public enum WireError: Error, Equatable, CustomStringConvertible {
    /// A libzmq call failed; `code` is libzmq's errno, `message` its explanation.
    case zmq(operation: String, code: Int32, message: String)
    /// The context was shut down (``ZMQContext/shutdown()``) while a socket was in use.
    case contextTerminated(operation: String)
    /// An `ipc://` path longer than a Unix socket address can hold.
    case endpointPathTooLong(endpoint: String, limit: Int)
    /// A received protobuf message that does not parse.
    case malformedMessage(type: String, detail: String)
    /// A message that parses but breaks the protocol (wrong version, wrong frame layout, arrays
    /// whose lengths do not fit the declared shape, ...).
    case protocolViolation(String)
    /// A caller passed something that cannot be encoded (e.g. values that do not fit the shape).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .zmq(operation, code, message):
            return "\(operation) failed: \(message) (errno \(code))"
        case let .contextTerminated(operation):
            return "\(operation) failed: the ZeroMQ context was shut down"
        case let .endpointPathTooLong(endpoint, limit):
            return "endpoint \(endpoint): the socket path is longer than the \(limit) bytes a Unix "
                + "socket address can hold; use a shorter run directory"
        case let .malformedMessage(type, detail):
            return "malformed \(type) message: \(detail)"
        case let .protocolViolation(detail):
            return "protocol violation: \(detail)"
        case let .invalidArgument(detail):
            return "invalid argument: \(detail)"
        }
    }
}

/// Why an ingest batch was refused. Each case maps to a ``RejectionReason`` (its counter in
/// `Status.rejected_batches`); ``description`` says what was wrong.
public enum BatchRejection: Error, Equatable, CustomStringConvertible {
    /// The message did not have exactly two frames (header, tensor).
    case frameCount(received: Int)
    /// Frame 0 is not a parseable BatchHeader.
    case malformedHeader(detail: String)
    /// The header's protocol_version is not one this build understands.
    case unsupportedVersion(UInt32)
    /// The header's dtype is unspecified or unknown.
    case unknownDType(rawValue: Int)
    /// Empty run or layer name, or a layer name containing a 0x00 byte (it would break topics).
    case invalidName(field: String, detail: String)
    /// No images, a zero dimension, or a tensor too large to address.
    case invalidShape(detail: String)
    /// The tensor frame's size does not equal images × C × h × w × sizeof(dtype).
    case sizeMismatch(expectedBytes: Int, receivedBytes: Int)

    public var description: String {
        switch self {
        case let .frameCount(received):
            return "a batch has 2 frames (header, tensor) but this message had \(received)"
        case let .malformedHeader(detail):
            return "batch header (frame 0) is not a valid BatchHeader protobuf: \(detail)"
        case let .unsupportedVersion(version):
            return "batch header has protocol_version \(version); this hndd speaks version "
                + "\(WireProtocol.version)"
        case let .unknownDType(rawValue):
            return rawValue == 0
                ? "batch header has no dtype (expected FLOAT32, FLOAT16 or BFLOAT16)"
                : "batch header has unknown dtype \(rawValue) (expected 1 FLOAT32, 2 FLOAT16 or 3 BFLOAT16)"
        case let .invalidName(field, detail):
            return "batch header field '\(field)' \(detail)"
        case let .invalidShape(detail):
            return "batch header shape: \(detail)"
        case let .sizeMismatch(expected, received):
            return "tensor frame has \(received) bytes but the header's images × C × h × w × "
                + "sizeof(dtype) = \(expected)"
        }
    }
}
