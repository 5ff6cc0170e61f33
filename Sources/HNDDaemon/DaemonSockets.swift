import Foundation
import HNDWire

/// The daemon's three sockets and the endpoints they actually bound (a `tcp://…:*` request gets
/// its port here). Made and configured first — CURVE, monitors — and bound only once the ZAP
/// handler runs, so that no peer connects unexamined.
struct DaemonSockets {
    let ingest: ZMQSocket
    let publish: ZMQSocket
    let control: ZMQSocket
    let requested: Endpoints
    let security: TransportSecurity
    private(set) var bound: Endpoints

    /// How long the ingest socket waits for a message: how soon the receiver notices a stop.
    static let ingestReceiveTimeoutMilliseconds: Int32 = 100
    /// Messages per ingest connection held in ZeroMQ's buffers; the real bound is the byte-sized queue.
    static let ingestHighWaterMark: Int32 = 4
    /// Snapshots queued for a slow subscriber before the publish socket drops them.
    static let publishHighWaterMark: Int32 = 64
    /// Largest control request accepted.
    static let maxControlMessageBytes: Int64 = 1 << 20
    /// The ZAP domain of the CURVE sockets (in the ZAP requests; one daemon, one domain).
    static let zapDomain = "hndd"

    /// Makes the sockets, unbound; `serverKey` is the CURVE secret key when any endpoint uses CURVE.
    init(_ endpoints: Endpoints, security: TransportSecurity, serverKey: CurveKey?, context: ZMQContext,
         maxMessageBytes: Int64) throws {
        requested = endpoints
        bound = endpoints
        self.security = security
        ingest = try ZMQSocket(context, type: .pull)
        try ingest.setMaxMessageSize(bytes: maxMessageBytes)
        try ingest.setReceiveHighWaterMark(Self.ingestHighWaterMark)
        try ingest.setReceiveTimeout(milliseconds: Self.ingestReceiveTimeoutMilliseconds)
        try ingest.setLinger(milliseconds: 0)
        publish = try ZMQSocket(context, type: .pub)
        try publish.setSendHighWaterMark(Self.publishHighWaterMark)
        try publish.setLinger(milliseconds: 0)
        control = try ZMQSocket(context, type: .router)
        try control.setMaxMessageSize(bytes: Self.maxControlMessageBytes)
        try control.setLinger(milliseconds: 0)
        for (name, socket) in named where security.byEndpoint[name] == .curve {
            try socket.setCurveServer(secret: serverKey!, zapDomain: Self.zapDomain)
            try socket.monitor(endpoint: AccessGuard.monitorEndpoint(name), events: AccessGuard.monitoredEvents)
        }
    }

    var named: [(String, ZMQSocket)] { [("ingest", ingest), ("publish", publish), ("control", control)] }

    /// The monitor endpoints of the CURVE sockets, for the `AccessGuard`.
    var monitorEndpoints: [String] {
        named.filter { security.byEndpoint[$0.0] == .curve }.map { AccessGuard.monitorEndpoint($0.0) }
    }

    mutating func bind() throws {
        try ingest.bind(requested.ingest)
        try publish.bind(requested.publish)
        try control.bind(requested.control)
        bound = Endpoints(ingest: try ingest.lastEndpoint, publish: try publish.lastEndpoint, control: try control.lastEndpoint)
    }

    /// Drops every subscriber by binding the publish endpoint anew: they reconnect, and each goes
    /// through ZAP again — how a revoked key stops receiving snapshots. The old connections close
    /// only as the socket acts on the unbind's commands, which the engine loop has it do every
    /// turn (`ZMQSocket.processPendingCommands`). (ZeroMQ cannot close one peer of a bound
    /// socket; ingest and control instead check every message's key.)
    func rebindPublish() throws {
        try publish.unbind(bound.publish)
        var attempts = 0
        while true {
            do { return try publish.bind(bound.publish) } catch {
                // The listener closes on the I/O thread, a moment after unbind.
                attempts += 1
                if attempts >= 50 { throw error }
                usleep(20_000)
            }
        }
    }
}
