import CZMQ
import Foundation

/// A CURVE key (Curve25519, 32 bytes) in its Z85 text form, 40 characters: how ZeroMQ, pyzmq
/// and hndd's key files write it.
public struct CurveKey: Sendable, Hashable, CustomStringConvertible {
    public static let textLength = 40
    public let z85: String

    /// Validates `text` as a Z85-encoded 32-byte key.
    public init(z85 text: String) throws(WireError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count == Self.textLength, Self.decode(trimmed) != nil else {
            throw .invalidArgument("\"\(trimmed.prefix(48))\" is not a CURVE key (40 characters of Z85 text)")
        }
        z85 = trimmed
    }

    /// The key of 32 raw bytes (as a ZAP request carries a client's key).
    public init(bytes: [UInt8]) throws(WireError) {
        guard bytes.count == 32 else { throw .invalidArgument("a CURVE key has 32 bytes, not \(bytes.count)") }
        var text = [CChar](repeating: 0, count: Self.textLength + 1)
        guard zmq_z85_encode(&text, bytes, 32) != nil else { throw zmqError("zmq_z85_encode") }
        z85 = String(decoding: text.prefix(Self.textLength).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The 32 raw bytes.
    public var bytes: [UInt8] { Self.decode(z85)! }

    /// Never the secret itself in logs: the first characters identify a key well enough.
    public var description: String { String(z85.prefix(8)) + "…" }

    static func decode(_ text: String) -> [UInt8]? {
        guard text.utf8.count == textLength else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&bytes, text) == nil ? nil : bytes
    }
}

/// A CURVE key pair.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: CurveKey
    public let secretKey: CurveKey

    /// Checks that the public key is the secret key's.
    public init(publicKey: CurveKey, secretKey: CurveKey) throws(WireError) {
        guard try Curve.publicKey(of: secretKey) == publicKey else {
            throw .invalidArgument("the public key \(publicKey) is not the one of this secret key")
        }
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh pair from libzmq (libsodium's random source).
    public static func generate() throws(WireError) -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: CurveKey.textLength + 1)
        var secretText = [CChar](repeating: 0, count: CurveKey.textLength + 1)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else { throw zmqError("zmq_curve_keypair") }
        func key(_ text: [CChar]) throws(WireError) -> CurveKey {
            try CurveKey(z85: String(decoding: text.prefix(CurveKey.textLength).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return try CurveKeyPair(publicKey: key(publicText), secretKey: key(secretText))
    }
}

/// What libzmq offers for CURVE.
public enum Curve {
    /// Whether this libzmq was built with CURVE (libsodium).
    public static var isAvailable: Bool { zmq_has("curve") != 0 }

    /// The public key of a secret key.
    public static func publicKey(of secret: CurveKey) throws(WireError) -> CurveKey {
        var text = [CChar](repeating: 0, count: CurveKey.textLength + 1)
        guard zmq_curve_public(&text, secret.z85) == 0 else { throw zmqError("zmq_curve_public") }
        return try CurveKey(z85: String(decoding: text.prefix(CurveKey.textLength).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

extension ZMQSocket {
    /// Makes this socket a CURVE server with `secret`: peers must speak CURVE and know its public
    /// key; each is then put to the ZAP handler of this context, under `zapDomain`.
    public func setCurveServer(secret: CurveKey, zapDomain: String) throws(WireError) {
        try setIntOption(ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", 1)
        try setBytes(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", secret.bytes)
        try setBytes(ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", Array(zapDomain.utf8))
    }

    /// Makes this socket a CURVE client of the server whose public key is `server`.
    public func setCurveClient(server: CurveKey, pair: CurveKeyPair) throws(WireError) {
        try setBytes(ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", server.bytes)
        try setBytes(ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", pair.publicKey.bytes)
        try setBytes(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", pair.secretKey.bytes)
    }

    private func setBytes(_ option: Int32, _ name: String, _ bytes: [UInt8]) throws(WireError) {
        let status = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard status == 0 else { throw zmqError("zmq_setsockopt(\(name))") }
    }
}

extension ZMQMessage {
    /// A metadata property of a received frame (`zmq_msg_gets`): "User-Id" is what the ZAP
    /// handler named the peer's credential; "Peer-Address" its IP address. Nil when absent.
    public func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(pointer, name) else { return nil }
        return String(cString: value)
    }
}
