#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Constants of the wire protocol (proto/hndd.proto).
public enum WireProtocol {
    /// The protocol_version this build writes and accepts.
    public static let version: UInt32 = 1
}

/// The three endpoints of a daemon. By default they are Unix sockets in the run directory:
/// `ingest.sock` (trainers PUSH, daemon PULL), `publish.sock` (daemon PUB, subscribers SUB) and
/// `control.sock` (daemon REP/ROUTER, clients REQ/DEALER).
public struct Endpoints: Sendable, Equatable {
    public var ingest: String
    public var publish: String
    public var control: String

    /// Longest path an `ipc://` endpoint can have (a Unix socket address's `sun_path`, less its
    /// terminating zero).
    public static let maximumIPCPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    public init(ingest: String, publish: String, control: String) {
        self.ingest = ingest
        self.publish = publish
        self.control = control
    }

    /// The `ipc://` endpoints in `runDirectory`, made absolute so that clients started from
    /// another working directory find the same sockets.
    public init(runDirectory: String) {
        var directory = runDirectory.isEmpty ? "." : runDirectory
        if !directory.hasPrefix("/") {
            directory = Endpoints.currentDirectory() + "/" + directory
        }
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        let base = directory == "/" ? "" : directory
        self.init(ingest: "ipc://\(base)/ingest.sock",
                  publish: "ipc://\(base)/publish.sock",
                  control: "ipc://\(base)/control.sock")
    }

    private static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Topics of the publish endpoint: a layer's name in UTF-8 followed by one 0x00 byte, so that a
/// subscription to one layer's topic (a prefix match in ZeroMQ) never matches another layer
/// whose name merely starts the same ("layer1" vs "layer10").
public enum PublishTopic {
    /// The topic frame, and subscription prefix, for `layer`.
    public static func topic(forLayer layer: String) -> [UInt8] {
        Array(layer.utf8) + [0]
    }

    /// The layer a topic frame names.
    public static func layer(fromTopic frame: UnsafeRawBufferPointer) throws(WireError) -> String {
        guard let terminator = frame.firstIndex(of: 0), terminator == frame.count - 1 else {
            throw .protocolViolation("publish topic is not a layer name followed by one 0x00 byte")
        }
        guard let layer = String(validating: frame[..<terminator], as: UTF8.self) else {
            throw .protocolViolation("publish topic is not valid UTF-8")
        }
        return layer
    }
}
