import Foundation
import HNDWire

/// The control endpoint (ROUTER): status, the current snapshot for a late subscriber, flush.
/// Answered on the engine thread once every batch handed to a worker before the request is
/// applied, the workers waiting meanwhile (`LayerWorkers.afterQueuedWork`).
extension Daemon {
    /// Answers every request waiting on the control socket.
    func serveControl(_ sockets: DaemonSockets) {
        let socket = sockets.control, security = sockets.security.control
        var requests: [ZMQMultipart] = []
        while true {
            let message: ZMQMultipart?
            do { message = try socket.receive(maxFrames: 4, dontWait: true) } catch { break }
            guard let message else { break }
            // ROUTER frames: [identity, payload] from DEALER, [identity, "", payload] from REQ.
            guard message.frameCount == 2 || (message.frameCount == 3 && message.frames[1].count == 0) else {
                counters.rejected[.controlMalformed, default: 0] += 1
                continue
            }
            requests.append(message)
        }
        guard !requests.isEmpty else { return }
        let replies = layerWorkers.afterQueuedWork(meanwhile: { publishOutbox(on: sockets.publish) }) { workers in
            requests.map { reply(to: $0, security: security, workers: workers) }
        }
        for frames in replies where !frames.isEmpty { _ = try? socket.send(frames, dontWait: true) }
    }

    /// The frames answering one control request: envelope, reply, and what follows it.
    func reply(to message: ZMQMultipart, security: EndpointSecurity, workers: [LayerWorker]) -> [[UInt8]] {
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
                more = answer(request, into: &reply, workers: workers)
            } catch {
                counters.rejected[.controlMalformed, default: 0] += 1
                reply.error.message = "\(error)"
            }
        }
        guard let bytes = try? WireCodec.serialize(reply) else { return [] }
        return envelope + [bytes] + more
    }

    /// Fills `reply`; returns the frames that follow it (a pass state's bytes), if any.
    func answer(_ request: Hndd_ControlRequest, into reply: inout Hndd_ControlReply, workers: [LayerWorker]) -> [[UInt8]] {
        switch request.request {
        case .status:
            reply.status = status(workers)
        case .snapshot(let snapshotRequest):
            if let current = currentSnapshot(layer: snapshotRequest.layer) {
                reply.snapshot = current
            } else {
                let known = workers.flatMap { Set($0.state.book.unitsOfLayer.keys).union($0.state.latest.keys) }.sorted()
                reply.error.message = "no snapshot of layer \(snapshotRequest.layer) yet (layers: \(known.joined(separator: ", ")))"
            }
        case .flush:
            let now = Date().timeIntervalSince1970
            for worker in workers {
                let book = worker.state.book
                for (key, pass) in book.open {
                    worker.state.latest[key.layer] = Hndd_Snapshot(book.snapshot(of: pass, now: now), taxonomy: taxonomy, duplicates: pass.duplicates)
                }
            }
            writeCheckpoint(of: workers)
            reply.ack.message = "checkpoint written; \(workers.reduce(0) { $0 + $1.state.book.open.count }) open passes"
        case .passState(let passRequest):
            return answerPassState(passRequest, into: &reply, workers: workers)
        case nil:
            reply.error.message = "empty control request"
        }
        return []
    }

    /// The latest state of a layer: the most recently updated open pass, else the last published.
    /// (Its worker waits at a `Rendezvous`.)
    func currentSnapshot(layer: String) -> Hndd_Snapshot? {
        guard let worker = layerWorkers.owner(of: layer) else { return nil }
        let book = worker.state.book
        if let pass = book.open.values.filter({ $0.key.layer == layer }).max(by: { $0.updatedAt < $1.updatedAt }) {
            if let published = worker.state.latest[layer], published.run == pass.key.run, published.step == pass.key.step,
               published.imagesSeen == Int64(pass.accumulator.imagesSeen) {
                return published
            }
            let message = Hndd_Snapshot(book.snapshot(of: pass, now: Date().timeIntervalSince1970), taxonomy: taxonomy, duplicates: pass.duplicates)
            worker.state.latest[layer] = message
            return message
        }
        return worker.state.latest[layer]
    }
}
