import HNDWire

/// The daemon's three sockets, bound, and the endpoints they actually bound (a `tcp://…:*`
/// request gets its port here).
struct DaemonSockets {
    let ingest: ZMQSocket
    let publish: ZMQSocket
    let control: ZMQSocket
    let bound: Endpoints

    /// How long the ingest socket waits for a message: how soon the receiver notices a stop.
    static let ingestReceiveTimeoutMilliseconds: Int32 = 100
    /// Messages per ingest connection held in ZeroMQ's buffers; the real bound is the byte-sized queue.
    static let ingestHighWaterMark: Int32 = 4
    /// Snapshots queued for a slow subscriber before the publish socket drops them.
    static let publishHighWaterMark: Int32 = 64
    /// Largest control request accepted.
    static let maxControlMessageBytes: Int64 = 1 << 20

    static func bind(_ endpoints: Endpoints, context: ZMQContext, maxMessageBytes: Int64) throws -> DaemonSockets {
        let ingest = try ZMQSocket(context, type: .pull)
        try ingest.setMaxMessageSize(bytes: maxMessageBytes)
        try ingest.setReceiveHighWaterMark(ingestHighWaterMark)
        try ingest.setReceiveTimeout(milliseconds: ingestReceiveTimeoutMilliseconds)
        try ingest.setLinger(milliseconds: 0)
        try ingest.bind(endpoints.ingest)
        let publish = try ZMQSocket(context, type: .pub)
        try publish.setSendHighWaterMark(publishHighWaterMark)
        try publish.setLinger(milliseconds: 0)
        try publish.bind(endpoints.publish)
        let control = try ZMQSocket(context, type: .router)
        try control.setMaxMessageSize(bytes: maxControlMessageBytes)
        try control.setLinger(milliseconds: 0)
        try control.bind(endpoints.control)
        let bound = Endpoints(ingest: try ingest.lastEndpoint, publish: try publish.lastEndpoint, control: try control.lastEndpoint)
        return DaemonSockets(ingest: ingest, publish: publish, control: control, bound: bound)
    }
}
