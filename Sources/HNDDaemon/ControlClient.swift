import HNDWire

/// One request/reply exchange with a daemon's control endpoint (a REQ socket per call).
public struct ControlClient {
    public let endpoint: String
    public init(endpoint: String) { self.endpoint = endpoint }

    public func request(_ request: Hndd_ControlRequest, timeout: Double) throws -> Hndd_ControlReply {
        var request = request
        request.protocolVersion = WireProtocol.version
        let context = try ZMQContext()
        defer { context.shutdown() }
        let socket = try ZMQSocket(context, type: .req)
        try socket.setLinger(milliseconds: 0)
        try socket.setReceiveTimeout(milliseconds: Int32(timeout * 1000))
        try socket.setSendTimeout(milliseconds: Int32(timeout * 1000))
        try socket.connect(endpoint)
        guard try socket.send([WireCodec.serialize(request)]) else {
            throw DaemonError("cannot reach the daemon at \(endpoint)")
        }
        guard let message = try socket.receive(maxFrames: 2) else {
            throw DaemonError("no answer from a daemon at \(endpoint) within \(timeout) s (is `hndd serve` running with this --run-dir?)")
        }
        let reply = try WireCodec.deserialize(Hndd_ControlReply.self, from: message.frames[0])
        if case .error(let error) = reply.reply { throw DaemonError("the daemon says: \(error.message)") }
        return reply
    }
}
