import Foundation
import HNDWire

/// The control endpoint (ROUTER): status, the current snapshot for a late subscriber, flush.
/// A request is first admitted and parsed on the engine thread; one that is refused (an
/// unauthorised key, bytes that are no request) is answered at once, so that a flood of them
/// never stops a worker. An admitted one is answered once every batch handed before it to the
/// workers it needs is applied, those workers waiting meanwhile (`LayerWorkers.afterQueuedWork`):
/// a layer's snapshot needs that layer's worker; status, flush and pass states need them all.
/// (So a client pipelining requests may get a refusal before the answer to an earlier request:
/// replies carry the request's id.)
extension Daemon {
    /// A control request that was admitted and parsed, with the envelope its reply goes back in.
    struct AdmittedRequest {
        let envelope: [[UInt8]]
        let request: Hndd_ControlRequest
    }

    /// Answers every request waiting on the control socket.
    func serveControl(_ sockets: DaemonSockets) {
        let socket = sockets.control, security = sockets.security.control
        var admitted: [AdmittedRequest] = []
        while true {
            let message: ZMQMultipart?
            do { message = try socket.receive(maxFrames: 4, dontWait: true) } catch { break }
            guard let message else { break }
            // ROUTER frames: [identity, payload] from DEALER, [identity, "", payload] from REQ.
            guard message.frameCount == 2 || (message.frameCount == 3 && message.frames[1].count == 0) else {
                counters.rejected[.controlMalformed, default: 0] += 1
                continue
            }
            switch admit(message, security: security) {
            case .success(let request): admitted.append(request)
            case .failure(let refusal): _ = try? socket.send(refusal.frames, dontWait: true)
            }
        }
        guard !admitted.isEmpty else { return }
        let needed = workersNeeded(by: admitted.map(\.request))
        let replies = layerWorkers.afterQueuedWork(of: needed, meanwhile: { publishOutbox(on: sockets.publish) }) { workers in
            admitted.map { reply(to: $0, workers: workers) }
        }
        for frames in replies where !frames.isEmpty { _ = try? socket.send(frames, dontWait: true) }
    }

    /// A refused request's reply frames (an `Error`, to fit `Result`).
    struct Refusal: Error { let frames: [[UInt8]] }

    /// `message` admitted and parsed, or the frames refusing it.
    func admit(_ message: ZMQMultipart, security: EndpointSecurity) -> Result<AdmittedRequest, Refusal> {
        let identity = message.frames[0].bytes
        let envelope: [[UInt8]] = message.frameCount == 3 ? [identity, []] : [identity]
        var reply = Hndd_ControlReply()
        reply.protocolVersion = WireProtocol.version
        guard admits(message, security: security, what: "control request") else {
            reply.error.message = "this credential is no longer authorised"
            return .failure(Refusal(frames: frames(of: reply, in: envelope)))
        }
        do {
            let request = try WireCodec.deserialize(Hndd_ControlRequest.self, from: message.frames[message.frameCount - 1])
            return .success(AdmittedRequest(envelope: envelope, request: request))
        } catch {
            counters.rejected[.controlMalformed, default: 0] += 1
            reply.error.message = "\(error)"
            return .failure(Refusal(frames: frames(of: reply, in: envelope)))
        }
    }

    /// The workers whose states answering `requests` reads: a snapshot's layer's worker (none if
    /// the layer was never routed), every worker for the others.
    func workersNeeded(by requests: [Hndd_ControlRequest]) -> [LayerWorker] {
        var needed: [Int: LayerWorker] = [:]
        for request in requests {
            switch request.request {
            case .snapshot(let snapshotRequest):
                if let owner = layerWorkers.owner(of: snapshotRequest.layer) { needed[owner.id] = owner }
            case nil:
                break
            case .status, .flush, .passState:
                return layerWorkers.all
            }
        }
        return needed.keys.sorted().compactMap { needed[$0] }
    }

    /// The frames answering an admitted request: envelope, reply, and what follows it. `workers`
    /// are those `workersNeeded` named, waiting.
    func reply(to admitted: AdmittedRequest, workers: [LayerWorker]) -> [[UInt8]] {
        var reply = Hndd_ControlReply()
        reply.protocolVersion = WireProtocol.version
        reply.requestID = admitted.request.requestID
        let more = answer(admitted.request, into: &reply, workers: workers)
        return frames(of: reply, in: admitted.envelope, followedBy: more)
    }

    /// `reply` serialised between its envelope and the frames that follow it; none if it cannot
    /// be serialised.
    func frames(of reply: Hndd_ControlReply, in envelope: [[UInt8]], followedBy more: [[UInt8]] = []) -> [[UInt8]] {
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
                // The router's names, not the workers' books: only the layer's own worker waits.
                let known = layerWorkers.router.workerOfLayer.keys.sorted()
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
