/// Why the daemon refused a peer, or a message, on a CURVE endpoint: the keys of
/// `Status.auth_denied_by_reason` (proto/hndd.proto), listed there even when zero. The one list
/// of these names.
public enum AuthDenial: String, CaseIterable, Sendable, Hashable {
    /// The peer does not speak CURVE: it has no credential (a plaintext client).
    case noCurve = "no_curve"
    /// The CURVE handshake failed: the peer used another server key, or a broken credential.
    case handshakeFailed = "handshake_failed"
    /// The handshake succeeded but the peer's key is not authorised.
    case unknownKey = "unknown_key"
    /// The peer's key was revoked (`hndd keys revoke`).
    case revokedKey = "revoked_key"
    /// A message on a connection made before its key was revoked: dropped.
    case revokedConnection = "revoked_connection"
}
