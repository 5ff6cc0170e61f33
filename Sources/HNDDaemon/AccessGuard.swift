import Foundation
import HNDWire
import Logging

/// The daemon's ZAP handler and the monitor of its CURVE sockets, on a thread of their own (ZAP
/// must answer while the engine thread computes a snapshot; sockets stay with the thread that
/// made them).
///
/// - ZAP (`inproc://zeromq.zap.01`): each peer that completed a CURVE handshake is admitted when
///   its public key is authorised (its user id, the "User-Id" of its messages, is then the key)
///   and refused otherwise, as unknown or revoked, with its address in the log.
/// - The socket monitors: a peer that does not speak CURVE, or uses another server key, fails
///   before ZAP; the monitor reports the failure and, with the disconnection that follows on the
///   same I/O thread, the connection's descriptor, whose peer address was read when it was
///   accepted.
final class AccessGuard: @unchecked Sendable {
    /// The monitor events read (every socket with CURVE publishes them to `monitorEndpoint`).
    static let monitoredEvents = ZMQMonitorEvent.accepted | ZMQMonitorEvent.disconnected
        | ZMQMonitorEvent.handshakeFailedNoDetail | ZMQMonitorEvent.handshakeFailedProtocol
    static let pollMilliseconds = 100

    let context: ZMQContext
    let keys: AuthorizedKeys
    let denials: AuthDenials
    let logger: Logger
    let monitorEndpoints: [String]
    private let stopRequested = StopFlag()
    private let started = NSCondition()
    private var state: Result<Void, WireError>?
    private var finished = false

    static func monitorEndpoint(_ socket: String) -> String { "inproc://hndd-monitor-\(socket)" }

    init(context: ZMQContext, keys: AuthorizedKeys, denials: AuthDenials, logger: Logger, monitorEndpoints: [String]) {
        self.context = context
        self.keys = keys
        self.denials = denials
        self.logger = logger
        self.monitorEndpoints = monitorEndpoints
    }

    /// Starts the thread and returns once the ZAP handler is bound and every monitor connected
    /// (before any CURVE socket binds, so that no peer is admitted unasked).
    func start() throws {
        let thread = Thread { [self] in run() }
        thread.name = "hndd-zap"
        thread.start()
        started.lock(); defer { started.unlock() }
        while state == nil { started.wait() }
        try state!.get()
    }

    func stop() {
        stopRequested.set()
        started.lock(); defer { started.unlock() }
        while !finished && state != nil { started.wait() }
    }

    private func signal(_ result: Result<Void, WireError>?, finished isFinished: Bool = false) {
        started.lock()
        if let result { state = result }
        if isFinished { finished = true }
        started.broadcast()
        started.unlock()
    }

    private func run() {
        let zap: ZMQSocket, monitors: [SocketMonitor]
        do {
            zap = try ZMQSocket(context, type: .rep)
            try zap.setLinger(milliseconds: 0)
            try zap.bind(ZAP.endpoint)
            monitors = try monitorEndpoints.map { endpoint throws(WireError) in
                let pair = try ZMQSocket(context, type: .pair)
                try pair.setLinger(milliseconds: 0)
                try pair.connect(endpoint)
                return SocketMonitor(socket: pair)
            }
        } catch {
            signal(.failure(error), finished: true)
            return
        }
        signal(.success(()))
        var tracked = monitors
        while !stopRequested.isSet {
            guard let ready = try? ZMQPoll.readable([zap] + tracked.map(\.socket), timeoutMilliseconds: Self.pollMilliseconds) else { continue }
            if ready[0] { answer(zap) }
            for i in tracked.indices where ready[i + 1] { tracked[i].read(denials: denials) }
        }
        signal(nil, finished: true)
    }

    /// Answers every ZAP request waiting.
    private func answer(_ zap: ZMQSocket) {
        while let message = try? zap.receive(maxFrames: 8, dontWait: true) {
            let frames = message.frames.map(\.bytes)
            guard let request = ZAP.request(frames) else {
                logger.error("ZAP: a request that is not ZAP 1.0 (\(frames.count) frames); ignored")
                _ = try? zap.send([Array(ZAP.version.utf8), [], Array("500".utf8), Array("malformed request".utf8), [], []])
                continue
            }
            _ = try? zap.send(reply(to: request), dontWait: true)
        }
    }

    func reply(to request: ZAP.Request) -> [[UInt8]] {
        guard let key = request.curveKey else {
            denials.deny(.handshakeFailed, peer: request.address, detail: "mechanism \(request.mechanism), not CURVE")
            return ZAP.reply(to: request, admit: false, statusText: "CURVE only")
        }
        switch keys.verdict(key) {
        case .admitted(let name):
            logger.info("admitted client \(name) from \(request.address)")
            return ZAP.reply(to: request, admit: true, statusText: "OK", userID: key.z85)
        case .revoked(let name):
            denials.deny(.revokedKey, peer: request.address, detail: "the key of client \(name) was revoked")
            return ZAP.reply(to: request, admit: false, statusText: "revoked")
        case .unknown:
            denials.deny(.unknownKey, peer: request.address, detail: "key \(key) is not authorised (keys/authorized)")
            return ZAP.reply(to: request, admit: false, statusText: "not authorised")
        }
    }
}

/// One CURVE socket's monitor: remembers each accepted connection's peer address by descriptor,
/// and counts a failed handshake when the connection's disconnection names it.
struct SocketMonitor {
    let socket: ZMQSocket
    private var peers: [UInt32: String] = [:]
    private var failure: (reason: AuthDenial, detail: String)?

    init(socket: ZMQSocket) { self.socket = socket }

    mutating func read(denials: AuthDenials) {
        while let message = try? socket.receive(maxFrames: 2, dontWait: true) {
            guard let event = ZMQMonitorEvent(message.frames.map(\.bytes)) else { continue }
            handle(event, denials: denials)
        }
    }

    mutating func handle(_ event: ZMQMonitorEvent, denials: AuthDenials) {
        switch event.event {
        case ZMQMonitorEvent.accepted:
            peers[event.value] = Self.peerAddress(ofDescriptor: Int32(bitPattern: event.value))
        case ZMQMonitorEvent.handshakeFailedProtocol:
            flush(denials: denials, peer: "an unknown peer")
            failure = event.value == ZMQMonitorEvent.mechanismMismatch
                ? (.noCurve, "the peer does not speak CURVE (no credential?) on \(event.endpoint)")
                : (.handshakeFailed, "CURVE handshake failed on \(event.endpoint) (protocol error 0x\(String(event.value, radix: 16)): another server key?)")
        case ZMQMonitorEvent.handshakeFailedNoDetail:
            flush(denials: denials, peer: "an unknown peer")
            failure = (.handshakeFailed, "the connection to \(event.endpoint) ended during the CURVE handshake (\(String(cString: strerror(Int32(event.value)))))")
        case ZMQMonitorEvent.disconnected:
            flush(denials: denials, peer: peers.removeValue(forKey: event.value) ?? "an unknown peer")
        default:
            break
        }
    }

    /// Counts the pending failure, if any, against `peer`.
    private mutating func flush(denials: AuthDenials, peer: String) {
        guard let pending = failure else { return }
        failure = nil
        denials.deny(pending.reason, peer: peer, detail: pending.detail)
    }

    /// "address:port" of a connected socket, or nil once it is closed.
    static func peerAddress(ofDescriptor fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard got == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST)), port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let named = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &port, socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard named == 0 else { return nil }
        func text(_ chars: [CChar]) -> String { String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return text(host) + ":" + text(port)
    }
}
