import HNDWire

/// How one endpoint of the daemon is protected (the values of `Status.endpoint_security`).
public enum EndpointSecurity: String, Sendable {
    /// A Unix socket in the run directory, whose mode 0700 is its access control.
    case ipc
    /// TCP with CURVE: encrypted, and only authorised client keys admitted.
    case curve
    /// TCP without CURVE (`--insecure-tcp`).
    case plaintext
}

/// Which endpoints get CURVE (README § Security): every TCP endpoint, unless `--insecure-tcp`.
/// CURVE needs the daemon's key pair in the run directory (`hndd keys`); a TCP endpoint without
/// it is refused — whether loopback or not, since any local user reaches 127.0.0.1 — unless
/// `--insecure-tcp` is given, which serves TCP in plaintext with a warning on every start.
public struct TransportSecurity: Sendable {
    public let ingest: EndpointSecurity
    public let publish: EndpointSecurity
    public let control: EndpointSecurity
    /// Said at every start.
    public let warnings: [String]

    /// "ingest curve, publish curve, control ipc": for the start-up log.
    public var summary: String { "ingest \(ingest.rawValue), publish \(publish.rawValue), control \(control.rawValue)" }

    public var usesCurve: Bool { [ingest, publish, control].contains(.curve) }
    public var byEndpoint: [String: EndpointSecurity] { ["ingest": ingest, "publish": publish, "control": control] }

    public init(_ endpoints: Endpoints, insecureTCP: Bool, keys: KeyDirectory) throws {
        var warnings: [String] = []
        func plan(_ name: String, _ endpoint: String) throws -> EndpointSecurity {
            guard endpoint.hasPrefix("tcp://") else { return .ipc }
            let loopback = Self.isLoopback(endpoint)
            if insecureTCP {
                warnings.append("--insecure-tcp: the \(name) endpoint \(endpoint) has no encryption and no authentication: "
                                + (loopback ? "any user of this machine" : "anyone who can reach this port")
                                + " can push activations, read every snapshot and use the control socket")
                return .plaintext
            }
            guard keys.hasServerKeys else {
                throw DaemonError("\(name) endpoint \(endpoint): TCP is served with CURVE, and \(keys.path) has no server key pair "
                                  + "(\(loopback ? "loopback" : "not loopback: reachable from other machines")). Make it, and a credential "
                                  + "per trainer, with `hndd keys client --run-dir DIR --name NAME`; or pass --insecure-tcp to serve TCP "
                                  + "without encryption or authentication")
            }
            guard Curve.isAvailable else {
                throw DaemonError("\(name) endpoint \(endpoint): this libzmq has no CURVE (built without libsodium); "
                                  + "use ipc:// or pass --insecure-tcp")
            }
            return .curve
        }
        ingest = try plan("ingest", endpoints.ingest)
        publish = try plan("publish", endpoints.publish)
        control = try plan("control", endpoints.control)
        self.warnings = warnings
    }

    /// Whether a tcp:// endpoint binds a loopback address only (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ endpoint: String) -> Bool {
        var host = Substring(endpoint.dropFirst("tcp://".count))
        if host.hasPrefix("[") { host = host.dropFirst().prefix { $0 != "]" } } else if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        return host.hasPrefix("127.") || host == "::1" || host == "localhost" || host == "lo"
    }
}
