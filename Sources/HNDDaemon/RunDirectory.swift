import Foundation
import HNDWire

/// The daemon's run directory: its sockets, the endpoints it actually bound (endpoints.json,
/// read by `subscribe`, `status` and the Python client), its checkpoint and a lock that keeps a
/// second daemon out.
public struct RunDirectory: Sendable {
    /// The run directory of `serve`, `subscribe` and `status` when none is given.
    public static let defaultPath = "hndd-run"

    public let path: String

    public init(_ path: String) {
        self.path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    public var endpointsFile: String { path + "/endpoints.json" }
    public var checkpointFile: String { path + "/checkpoint.hndd" }
    public var lockFile: String { path + "/daemon.lock" }
    public var defaultSnapshotFile: String { path + "/snapshots.h5" }

    /// Creates the directory with mode 0700 (only its owner may talk to the daemon's sockets).
    public func create() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw DaemonError("run directory \(path) exists and is not a directory") }
            chmod(path, 0o700)
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw DaemonError("cannot create run directory \(path): \(error.localizedDescription)")
            }
        }
    }

    /// Takes the directory's lock for this process (released when the process ends, even by kill -9).
    public func lock() throws -> Int32 {
        let fd = open(lockFile, O_CREAT | O_RDWR, 0o600)
        guard fd >= 0 else { throw DaemonError("cannot open \(lockFile): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw DaemonError("another hndd serve is running on \(path) (\(lockFile) is locked)")
        }
        return fd
    }

    /// Where a client finds the daemon: the endpoints it bound, else the default sockets.
    public func endpoints() -> Endpoints {
        if let data = FileManager.default.contents(atPath: endpointsFile),
           let json = try? JSONSerialization.jsonObject(with: data) as? [String: String],
           let ingest = json["ingest"], let publish = json["publish"], let control = json["control"] {
            return Endpoints(ingest: ingest, publish: publish, control: control)
        }
        return Endpoints(runDirectory: path)
    }

    public func writeEndpoints(_ e: Endpoints) throws {
        let json = try JSONSerialization.data(withJSONObject: ["ingest": e.ingest, "publish": e.publish, "control": e.control],
                                              options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        let temporary = endpointsFile + ".writing"
        FileManager.default.createFile(atPath: temporary, contents: json, attributes: [.posixPermissions: 0o600])
        rename(temporary, endpointsFile)
    }
}

/// What `--ingest`, `--publish`, `--control` accept: nothing (the run directory's ipc socket),
/// an `ipc://` path, or TCP — `tcp` alone or `tcp://:PORT` binds 127.0.0.1 only; an explicit
/// host binds that host.
public func resolveEndpoint(_ requested: String?, default ipc: String) -> String {
    guard let requested, !requested.isEmpty else { return ipc }
    if requested == "tcp" { return "tcp://127.0.0.1:*" }
    if requested.hasPrefix("tcp://:") { return "tcp://127.0.0.1" + requested.dropFirst("tcp://".count) }
    return requested
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
