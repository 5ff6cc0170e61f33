import Foundation
import HNDWire

/// What `hndd keys` does to a run directory's key files (see `KeyDirectory`). A running daemon
/// rereads the authorised and revoked keys when they change, so no command here needs a restart.
public struct KeyManagement: Sendable {
    public let keys: KeyDirectory
    public init(runDirectory: RunDirectory) { keys = KeyDirectory(runDirectory: runDirectory) }

    /// The daemon's key pair, made (mode 0600) if the run directory has none yet.
    @discardableResult
    public func ensureServerKeys() throws -> (keys: ServerKeys, created: Bool) {
        try makeDirectories()
        if keys.hasServerKeys { return (try ServerKeys.load(keys.serverSecret).keys, false) }
        guard Curve.isAvailable else { throw DaemonError("this libzmq was built without CURVE (libsodium); it cannot make keys") }
        let server = ServerKeys(pair: try CurveKeyPair.generate())
        try server.write(to: keys.serverSecret)
        try PublicKeyFile.write(server.pair.publicKey, to: keys.serverPublic)
        return (server, true)
    }

    /// Makes client `name`'s credential (its key pair and the server's public key) in
    /// keys/clients/NAME.secret and authorises its key; returns the credential's path.
    public func makeClient(_ name: String) throws -> String {
        try KeyDirectory.checkName(name)
        let server = try ensureServerKeys().keys
        let authorized = keys.authorizedKey(name)
        guard !FileManager.default.fileExists(atPath: authorized) else {
            throw DaemonError("client \(name) already has a key (\(authorized)); revoke it first (hndd keys revoke) or choose another name")
        }
        let credential = ClientCredential(name: name, pair: try CurveKeyPair.generate(), serverKey: server.pair.publicKey)
        try credential.write(to: keys.credential(name))
        try PublicKeyFile.write(credential.pair.publicKey, to: authorized)
        try? FileManager.default.removeItem(atPath: keys.revokedKey(name))
        return keys.credential(name)
    }

    /// Revokes client `name`: its key moves to keys/revoked (so the daemon says why it refuses
    /// it) and its credential file is deleted.
    public func revoke(_ name: String) throws {
        try KeyDirectory.checkName(name)
        let authorized = keys.authorizedKey(name)
        guard FileManager.default.fileExists(atPath: authorized) else {
            let known = try list().filter { $0.authorized }.map(\.name)
            throw DaemonError("no authorised client \(name) in \(keys.authorized) (authorised: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        try makeDirectories()
        guard rename(authorized, keys.revokedKey(name)) == 0 else {
            throw DaemonError("cannot move \(authorized) to \(keys.revoked): \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(atPath: keys.credential(name))
    }

    public struct Client: Sendable, Equatable {
        public let name: String
        public let authorized: Bool
        public let key: CurveKey?
    }

    /// Every client with a key file, authorised ones first, by name.
    public func list() throws -> [Client] {
        func clients(in directory: String, authorized: Bool) -> [Client] {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            return files.filter { $0.hasSuffix(".pub") }.sorted().map { file in
                Client(name: String(file.dropLast(4)), authorized: authorized, key: try? PublicKeyFile.read(directory + "/" + file))
            }
        }
        return clients(in: keys.authorized, authorized: true) + clients(in: keys.revoked, authorized: false)
    }

    func makeDirectories() throws {
        for directory in [keys.path, keys.authorized, keys.revoked, keys.clients] {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw DaemonError("cannot create \(directory): \(error.localizedDescription)")
            }
        }
    }
}
