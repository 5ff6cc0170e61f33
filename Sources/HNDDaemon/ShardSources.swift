import Foundation
import HNDEngine
import HNDWire

/// Where `hndd merge` finds the shards of passes: state files (a daemon's checkpoint.hndd, or a
/// shard's kept pass in RUN-DIR/shards) and running daemons (PassStateRequest). A source that
/// holds no pass of the selection is an error naming what it holds: shards that disagree on the
/// layer (or run, or step) are refused.
public enum ShardSources {
    public static func file(_ path: String, selection: PassSelection) throws -> [PassShard] {
        guard let contents = try Checkpoint.contents(path) else { throw DaemonError("\(path): no such state file") }
        let shards = contents.passes.filter { selection.matches($0.key) }.map { entry in
            PassShard(source: path, key: entry.key, state: entry.state, duplicates: entry.duplicates,
                      identity: .checkpoint(contents.fingerprint))
        }
        guard !shards.isEmpty else { throw nothingSelected(path, selection, holds: contents.passes.map(\.key)) }
        return shards
    }

    /// The passes of a running daemon: the one the selection names, or every pass its status
    /// lists (open and recently finished) that the selection matches.
    public static func daemon(_ name: String, control: String, credential: ClientCredential?, selection: PassSelection,
                              timeout: Double) throws -> [PassShard] {
        let client = ControlClient(endpoint: control, credential: credential)
        let source = "daemon \(name) (\(control))"
        let keys: [PassKey]
        if let key = selection.key {
            keys = [key]
        } else {
            var request = Hndd_ControlRequest()
            request.status = Hndd_StatusRequest()
            let status = try client.request(request, timeout: timeout).status
            let listed = status.layers.flatMap { layer in layer.passes.map { PassKey(run: $0.run, layer: layer.layer, step: $0.step) } }
            keys = Array(Set(listed.filter(selection.matches)))
            guard !keys.isEmpty else { throw nothingSelected(source, selection, holds: listed) }
        }
        return try keys.map { key in try passState(key, from: client, source: source, timeout: timeout) }
    }

    static func passState(_ key: PassKey, from client: ControlClient, source: String, timeout: Double) throws -> PassShard {
        var request = Hndd_ControlRequest()
        var passRequest = Hndd_PassStateRequest()
        passRequest.run = key.run; passRequest.layer = key.layer; passRequest.step = key.step
        request.passState = passRequest
        let (reply, more) = try client.exchange(request, timeout: timeout)
        guard case .passState(let state) = reply.reply, more.count == 1, UInt64(more[0].count) == state.stateBytes else {
            throw DaemonError("\(source): the reply to a pass state request for (\(key)) is not a PassState and its state frame")
        }
        return PassShard(source: source, key: key, state: more[0].bytes, duplicates: state.duplicatesReported,
                         identity: .dictionary(state.dictionaryFingerprint))
    }

    static func nothingSelected(_ source: String, _ selection: PassSelection, holds: [PassKey]) -> DaemonError {
        let held = Set(holds).map { "\($0.layer)/\($0.run)/\($0.step)" }.sorted()
        return DaemonError("\(source) holds no pass of \(selection) (it holds: \(held.isEmpty ? "none" : held.joined(separator: ", "))); "
                           + "nothing merged, nothing written")
    }
}
