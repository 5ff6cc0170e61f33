import Foundation
import HNDWire

/// The control endpoint (ROUTER): status, the current snapshot for a late subscriber, flush.
/// Answered between batches on the engine thread, never blocking it.
extension Daemon {
    /// Answers every request waiting on the control socket.
    func serveControl(_ socket: ZMQSocket, security: EndpointSecurity) {
        while true {
            let message: ZMQMultipart?
            do { message = try socket.receive(maxFrames: 4, dontWait: true) } catch { return }
            guard let message else { return }
            // ROUTER frames: [identity, payload] from DEALER, [identity, "", payload] from REQ.
            guard message.frameCount == 2 || (message.frameCount == 3 && message.frames[1].count == 0) else {
                counters.rejected[.controlMalformed, default: 0] += 1
                continue
            }
            let identity = message.frames[0].bytes
            let envelope: [[UInt8]] = message.frameCount == 3 ? [identity, []] : [identity]
            var reply = Hndd_ControlReply()
            reply.protocolVersion = WireProtocol.version
            var more: [[UInt8]] = []
            if !admits(message, security: security, what: "control request") {
                reply.error.message = "this credential is no longer authorised"
            } else {
                do {
                    let request = try WireCodec.deserialize(Hndd_ControlRequest.self, from: message.frames[message.frameCount - 1])
                    reply.requestID = request.requestID
                    more = answer(request, into: &reply)
                } catch {
                    counters.rejected[.controlMalformed, default: 0] += 1
                    reply.error.message = "\(error)"
                }
            }
            if let bytes = try? WireCodec.serialize(reply) {
                _ = try? socket.send(envelope + [bytes] + more, dontWait: true)
            }
        }
    }

    /// Fills `reply`; returns the frames that follow it (a pass state's bytes), if any.
    func answer(_ request: Hndd_ControlRequest, into reply: inout Hndd_ControlReply) -> [[UInt8]] {
        switch request.request {
        case .status:
            reply.status = status()
        case .snapshot(let snapshotRequest):
            if let current = currentSnapshot(layer: snapshotRequest.layer) {
                reply.snapshot = current
            } else {
                let known = Set(book.unitsOfLayer.keys).union(latest.keys).sorted()
                reply.error.message = "no snapshot of layer \(snapshotRequest.layer) yet (layers: \(known.joined(separator: ", ")))"
            }
        case .flush:
            let now = Date().timeIntervalSince1970
            for key in Array(book.open.keys) {
                if let pass = book.open[key] {
                    latest[key.layer] = Hndd_Snapshot(book.snapshot(of: pass, now: now), taxonomy: taxonomy, duplicates: pass.duplicates)
                }
            }
            checkpoint()
            reply.ack.message = "checkpoint written; \(book.open.count) open passes"
        case .passState(let passRequest):
            return answerPassState(passRequest, into: &reply)
        case nil:
            reply.error.message = "empty control request"
        }
        return []
    }

    /// The latest state of a layer: the most recently updated open pass, else the last published.
    func currentSnapshot(layer: String) -> Hndd_Snapshot? {
        if let pass = book.open.values.filter({ $0.key.layer == layer }).max(by: { $0.updatedAt < $1.updatedAt }) {
            if let published = latest[layer], published.run == pass.key.run, published.step == pass.key.step,
               published.imagesSeen == Int64(pass.accumulator.imagesSeen) {
                return published
            }
            let message = Hndd_Snapshot(book.snapshot(of: pass, now: Date().timeIntervalSince1970), taxonomy: taxonomy, duplicates: pass.duplicates)
            latest[layer] = message
            return message
        }
        return latest[layer]
    }
}
