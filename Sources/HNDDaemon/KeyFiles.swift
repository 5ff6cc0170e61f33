import Foundation
import HNDWire

/// The CURVE key files of a run directory (README § Security):
///
///     keys/server.secret          the daemon's key pair (mode 0600)
///     keys/server.pub             its public key
///     keys/authorized/NAME.pub    a client's public key: admitted
///     keys/revoked/NAME.pub       a revoked client's key: refused, and said so
///     keys/clients/NAME.secret    the credential made for client NAME (mode 0600): its key pair
///                                 and the server's public key, all a trainer host needs
///
/// `.pub` files hold one line, the key in Z85; `.secret` files are JSON.
public struct KeyDirectory: Sendable {
    public let path: String
    public init(runDirectory: RunDirectory) { path = runDirectory.path + "/keys" }

    public var serverSecret: String { path + "/server.secret" }
    public var serverPublic: String { path + "/server.pub" }
    public var authorized: String { path + "/authorized" }
    public var revoked: String { path + "/revoked" }
    public var clients: String { path + "/clients" }
    public func authorizedKey(_ name: String) -> String { authorized + "/\(name).pub" }
    public func revokedKey(_ name: String) -> String { revoked + "/\(name).pub" }
    public func credential(_ name: String) -> String { clients + "/\(name).secret" }

    /// Whether the daemon's key pair exists (CURVE is possible).
    public var hasServerKeys: Bool { FileManager.default.fileExists(atPath: serverSecret) }

    /// A client name: letters, digits, '.', '_' and '-', not starting with '.' (it names files).
    public static func checkName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, !name.hasPrefix("."), name.count <= 64, name.allSatisfy(allowed.contains) else {
            throw DaemonError("client name \"\(name)\": use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }
}

/// What a trainer host needs to reach a CURVE daemon: its own key pair and the daemon's public key.
public struct ClientCredential: Sendable, Equatable {
    public static let format = "hndd-curve-credential"
    public static let version = 1
    public var name: String
    public var pair: CurveKeyPair
    public var serverKey: CurveKey

    public init(name: String, pair: CurveKeyPair, serverKey: CurveKey) {
        self.name = name; self.pair = pair; self.serverKey = serverKey
    }

    /// Reads a credential file; `warning` says when others may read it (it holds a secret key).
    public static func load(_ path: String) throws -> (credential: ClientCredential, warning: String?) {
        let json = try KeyFileJSON.read(path, format: format)
        let credential = ClientCredential(
            name: try json.string("name"),
            pair: try json.pair(),
            serverKey: try json.key("server_public_key"))
        return (credential, KeyFileJSON.permissionWarning(path))
    }

    public func write(to path: String) throws {
        try KeyFileJSON.write(["format": Self.format, "version": Self.version, "name": name,
                               "public_key": pair.publicKey.z85, "secret_key": pair.secretKey.z85,
                               "server_public_key": serverKey.z85], to: path)
    }
}

/// The daemon's key pair.
public struct ServerKeys: Sendable, Equatable {
    public static let format = "hndd-curve-server"
    public static let version = 1
    public var pair: CurveKeyPair

    public static func load(_ path: String) throws -> (keys: ServerKeys, warning: String?) {
        let json = try KeyFileJSON.read(path, format: format)
        return (ServerKeys(pair: try json.pair()), KeyFileJSON.permissionWarning(path))
    }

    public func write(to path: String) throws {
        try KeyFileJSON.write(["format": Self.format, "version": Self.version, "public_key": pair.publicKey.z85,
                               "secret_key": pair.secretKey.z85], to: path)
    }
}

/// Reading and writing the JSON key files, with errors that name the file and the field.
struct KeyFileJSON {
    let path: String
    let object: [String: Any]

    static func read(_ path: String, format: String) throws -> KeyFileJSON {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DaemonError("\(path): cannot read the key file (\(String(cString: strerror(errno))))")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DaemonError("\(path): not a JSON object (an hndd key file is JSON)")
        }
        let json = KeyFileJSON(path: path, object: object)
        let found = try json.string("format")
        guard found == format else { throw DaemonError("\(path): format is \"\(found)\", expected \"\(format)\"") }
        guard object["version"] as? Int == 1 else { throw DaemonError("\(path): version \(object["version"] ?? "missing") is not 1") }
        return json
    }

    func string(_ field: String) throws -> String {
        guard let value = object[field] as? String else { throw DaemonError("\(path): field \"\(field)\" is missing or not a string") }
        return value
    }

    func key(_ field: String) throws -> CurveKey {
        do { return try CurveKey(z85: try string(field)) } catch let error as WireError {
            throw DaemonError("\(path): field \"\(field)\": \(error)")
        }
    }

    func pair() throws -> CurveKeyPair {
        do { return try CurveKeyPair(publicKey: try key("public_key"), secretKey: try key("secret_key")) } catch let error as WireError {
            throw DaemonError("\(path): \(error)")
        }
    }

    /// Written to a temporary file of mode 0600, then renamed: never readable by others, never torn.
    static func write(_ object: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try writePrivately(data + Data("\n".utf8), to: path)
    }

    static func writePrivately(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let temporary = path + ".writing"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: Int(mode)]) else {
            throw DaemonError("\(temporary): cannot write (\(String(cString: strerror(errno))))")
        }
        chmod(temporary, mode)
        guard rename(temporary, path) == 0 else { throw DaemonError("\(path): cannot rename into place (\(String(cString: strerror(errno))))") }
    }

    /// A warning when a secret key file is readable or writable by group or others (as ssh
    /// refuses such private keys), naming the file and its mode.
    static func permissionWarning(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & 0o077 != 0 else { return nil }
        let mode = String(info.st_mode & 0o777, radix: 8)
        return "\(path) holds a secret key but its mode is 0\(mode) (group or others may read it): chmod 600 \(path)"
    }
}

/// A `.pub` file: the first line that is not empty or a comment, a Z85 key.
enum PublicKeyFile {
    static func read(_ path: String) throws -> CurveKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw DaemonError("\(path): cannot read") }
        guard let line = text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) })
            .first(where: { !$0.isEmpty && !$0.hasPrefix("#") }) else { throw DaemonError("\(path): no key in the file") }
        do { return try CurveKey(z85: line) } catch { throw DaemonError("\(path): \(error)") }
    }

    static func write(_ key: CurveKey, to path: String) throws {
        try KeyFileJSON.writePrivately(Data((key.z85 + "\n").utf8), to: path, mode: 0o644)
    }
}
