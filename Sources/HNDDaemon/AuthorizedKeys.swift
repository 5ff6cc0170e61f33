import Foundation
import HNDWire
import Logging

/// The client keys a CURVE daemon admits and the ones it knows as revoked, read from the run
/// directory and reread whenever keys/authorized or keys/revoked changes (or every
/// `rereadInterval`), so that `hndd keys client` and `hndd keys revoke` take effect without a
/// restart. Asked by the ZAP thread (each new connection) and the engine thread (each message on
/// a CURVE endpoint): locked.
final class AuthorizedKeys: @unchecked Sendable {
    enum Verdict: Equatable {
        case admitted(name: String)
        case revoked(name: String)
        case unknown
    }

    /// Seconds after which the files are reread even if the directories look unchanged (an
    /// edit in place changes a file, not its directory).
    static let rereadInterval = 2.0

    private let directory: KeyDirectory
    private let logger: Logger
    private let lock = NSLock()
    private var admitted: [String: String] = [:] // Z85 key → client name
    private var revoked: [String: String] = [:]
    private var stamp: [timespec] = []
    private var readAt = -Double.infinity
    private var reported = Set<String>()
    /// Grows whenever a key stops being admitted: connections made with it must be dropped.
    private(set) var removals = 0

    init(_ directory: KeyDirectory, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    func verdict(_ key: CurveKey) -> Verdict {
        lock.lock(); defer { lock.unlock() }
        refresh()
        if let name = admitted[key.z85] { return .admitted(name: name) }
        if let name = revoked[key.z85] { return .revoked(name: name) }
        return .unknown
    }

    /// Whether the key of a connection (its Z85 user id) is still admitted.
    func isAdmitted(z85: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        refresh()
        return admitted[z85] != nil
    }

    /// The count of admitted keys (for the start-up log).
    var admittedCount: Int {
        lock.lock(); defer { lock.unlock() }
        refresh()
        return admitted.count
    }

    var removalCount: Int {
        lock.lock(); defer { lock.unlock() }
        refresh()
        return removals
    }

    /// Rereads the key files when their directories changed or the last reading is old.
    private func refresh() {
        let now = Date().timeIntervalSince1970
        let current = [directory.authorized, directory.revoked].map(Self.modificationTime)
        guard current.map(\.tv_sec) != stamp.map(\.tv_sec) || current.map(\.tv_nsec) != stamp.map(\.tv_nsec)
                || now - readAt >= Self.rereadInterval else { return }
        stamp = current
        readAt = now
        let before = admitted
        admitted = read(directory.authorized)
        revoked = read(directory.revoked)
        if before.keys.contains(where: { admitted[$0] == nil }) { removals += 1 }
    }

    private func read(_ path: String) -> [String: String] {
        var keys: [String: String] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for file in files.sorted() where file.hasSuffix(".pub") {
            do {
                keys[try PublicKeyFile.read(path + "/" + file).z85] = String(file.dropLast(4))
            } catch {
                // Once per file: it is reread every few seconds.
                if reported.insert(path + "/" + file).inserted { logger.error("key file ignored: \(error)") }
            }
        }
        return keys
    }

    private static func modificationTime(_ path: String) -> timespec {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mtim : timespec()
    }
}
