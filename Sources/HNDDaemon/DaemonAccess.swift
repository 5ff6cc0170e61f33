import Foundation
import HNDWire
import Logging

/// The daemon's CURVE parts: its key pair, the authorised keys, the refusals counted, and the
/// `AccessGuard` thread (ZAP and the socket monitors).
final class DaemonAccess: @unchecked Sendable {
    let serverKeys: ServerKeys
    let keys: AuthorizedKeys
    let denials: AuthDenials
    let logger: Logger
    /// Key files others may read (the server's secret key, here).
    let credentialWarnings: Int
    /// Key removals already acted on (engine thread only).
    var removalsHandled: Int

    init(keys directory: KeyDirectory, logger: Logger) throws {
        let (server, warning) = try ServerKeys.load(directory.serverSecret)
        if let warning { logger.warning("\(warning)") }
        serverKeys = server
        credentialWarnings = warning == nil ? 0 : 1
        keys = AuthorizedKeys(directory, logger: logger)
        denials = AuthDenials(logger: logger)
        self.logger = logger
        removalsHandled = keys.removalCount
        if keys.admittedCount == 0 {
            logger.warning("no client key is authorised yet: make one with `hndd keys client --run-dir DIR --name NAME`")
        }
    }

    func startGuard(context: ZMQContext, monitorEndpoints: [String]) throws -> AccessGuard {
        let guardian = AccessGuard(context: context, keys: keys, denials: denials, logger: logger, monitorEndpoints: monitorEndpoints)
        try guardian.start()
        return guardian
    }
}

extension Daemon {
    /// Whether a message on an endpoint of `security` comes from a key still authorised. ZAP
    /// admitted the connection; a key revoked since then is refused here, message by message.
    func admits(_ message: ZMQMultipart, security: EndpointSecurity, what: String) -> Bool {
        guard security == .curve, let access else { return true }
        let user = message.frames.last?.property("User-Id") ?? ""
        if access.keys.isAdmitted(z85: user) { return true }
        let peer = message.frames.last?.property("Peer-Address") ?? "an unknown peer"
        access.denials.deny(.revokedConnection, peer: peer,
                            detail: "a \(what) from a connection whose key (\(user.prefix(8))…) is no longer authorised: dropped")
        return false
    }

    /// After a key is revoked, drops every subscriber (see `DaemonSockets.rebindPublish`); the
    /// others reconnect at once.
    func dropRevokedSubscribers(_ sockets: DaemonSockets) {
        guard let access, sockets.security.publish == .curve else { return }
        let removals = access.keys.removalCount
        guard removals != access.removalsHandled else { return }
        access.removalsHandled = removals
        do {
            try sockets.rebindPublish()
            logger.info("a client key was revoked: subscribers reconnect, and the revoked one is refused")
        } catch {
            logger.error("cannot bind the publish endpoint again after a revocation: \(error)")
        }
    }
}
