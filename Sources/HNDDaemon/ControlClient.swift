import HNDWire

/// One request/reply exchange with a daemon's control endpoint (a REQ socket per call), with a
/// CURVE credential for a daemon on TCP.
public struct ControlClient {
    public let endpoint: String
    public let credential: ClientCredential?
    public init(endpoint: String, credential: ClientCredential? = nil) {
        self.endpoint = endpoint
        self.credential = credential
    }

    public func request(_ request: Hndd_ControlRequest, timeout: Double) throws -> Hndd_ControlReply {
        try exchange(request, timeout: timeout).reply
    }

    /// The reply and the frames that follow it (a PassState's state bytes).
    public func exchange(_ request: Hndd_ControlRequest, timeout: Double) throws -> (reply: Hndd_ControlReply, more: [ZMQMessage]) {
        var request = request
        request.protocolVersion = WireProtocol.version
        let context = try ZMQContext()
        defer { context.shutdown() }
        let socket = try ZMQSocket(context, type: .req)
        try socket.setLinger(milliseconds: 0)
        try socket.setReceiveTimeout(milliseconds: Int32(timeout * 1000))
        try socket.setSendTimeout(milliseconds: Int32(timeout * 1000))
        if let credential { try socket.setCurveClient(server: credential.serverKey, pair: credential.pair) }
        try socket.connect(endpoint)
        guard try socket.send([WireCodec.serialize(request)]) else {
            throw DaemonError("cannot reach the daemon at \(endpoint)")
        }
        guard let message = try socket.receive(maxFrames: 2) else {
            throw DaemonError("no answer from a daemon at \(endpoint) within \(timeout) s ("
                              + (credential == nil && endpoint.hasPrefix("tcp://")
                                 ? "a daemon on TCP needs a credential: --key FILE, made by hndd keys client"
                                 : credential != nil ? "is it running, and is the credential \(credential!.name) authorised?"
                                 : "is `hndd serve` running with this --run-dir?") + ")")
        }
        let reply = try WireCodec.deserialize(Hndd_ControlReply.self, from: message.frames[0])
        if case .error(let error) = reply.reply { throw DaemonError("the daemon at \(endpoint) says: \(error.message)") }
        return (reply, Array(message.frames.dropFirst()))
    }
}
