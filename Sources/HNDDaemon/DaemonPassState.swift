import HNDEngine
import HNDWire

/// The state of a pass for `hndd merge` (control request PassStateRequest): an open pass, or a
/// finished one an image shard keeps. The reply is a PassState; the state's bytes follow it as
/// one more frame.
extension Daemon {
    func answerPassState(_ request: Hndd_PassStateRequest, into reply: inout Hndd_ControlReply, workers: [LayerWorker]) -> [[UInt8]] {
        let key = PassKey(run: request.run, layer: request.layer, step: request.step)
        var state = Hndd_PassState()
        state.run = key.run; state.layer = key.layer; state.step = key.step
        state.dictionaryFingerprint = dictionaryFingerprint
        state.imagesTotal = Int64(dictionary.imageCount)
        state.shard = configuration.shard?.description ?? ""
        let bytes: [UInt8]
        if let pass = layerWorkers.owner(of: key.layer)?.state.book.open[key] {
            bytes = pass.accumulator.encodedState()
            state.open = true
            state.imagesSeen = Int64(pass.accumulator.imagesSeen)
            state.duplicatesReported = pass.duplicates
        } else {
            do {
                guard let entry = try shardStates?.entry(key) else {
                    reply.error.message = "no pass (\(key)) here; " + passesHeld(workers)
                    return []
                }
                bytes = entry.state
                state.imagesSeen = Int64(try LayerStateHeader(entry.state).imagesSeen)
                state.duplicatesReported = entry.duplicates
            } catch {
                reply.error.message = "the kept state of (\(key)) cannot be read: \(error)"
                return []
            }
        }
        state.stateBytes = UInt64(bytes.count)
        reply.passState = state
        return [bytes]
    }

    /// The passes whose state a PassStateRequest can have, for an error message.
    func passesHeld(_ workers: [LayerWorker]) -> String {
        let open = workers.flatMap(\.state.book.open.keys).map { "\($0.layer)/\($0.run)/\($0.step)" }.sorted()
        let kept = (shardStates?.kept() ?? []).map { "\($0.key.layer)/\($0.key.run)/\($0.key.step)" }.sorted()
        return "open passes: \(open.isEmpty ? "none" : open.joined(separator: ", "))"
            + (shardStates == nil ? "" : "; kept shard passes: \(kept.isEmpty ? "none" : kept.joined(separator: ", "))")
    }
}
