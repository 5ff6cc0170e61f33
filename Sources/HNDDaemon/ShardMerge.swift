import Foundation
import HNDEngine

/// Which passes `hndd merge` merges: those of the given layer, run and step (each optional).
public struct PassSelection: Sendable, CustomStringConvertible {
    public var layer: String?, run: String?, step: Int64?
    public init(layer: String? = nil, run: String? = nil, step: Int64? = nil) { self.layer = layer; self.run = run; self.step = step }

    public func matches(_ key: PassKey) -> Bool {
        (layer == nil || layer == key.layer) && (run == nil || run == key.run) && (step == nil || step == key.step)
    }

    /// The one key this selection names, when it names every part.
    public var key: PassKey? { layer.flatMap { l in run.flatMap { r in step.map { PassKey(run: r, layer: l, step: $0) } } } }

    public var description: String {
        let parts = [layer.map { "layer \($0)" }, run.map { "run \($0)" }, step.map { "step \($0)" }].compactMap { $0 }
        return parts.isEmpty ? "any pass" : parts.joined(separator: ", ")
    }
}

/// One image shard of a pass, as `hndd merge` found it: in a checkpoint or shard state file, or
/// from a running daemon.
public struct PassShard: Sendable {
    /// How the source says which dictionary it was made with.
    public enum Identity: Sendable {
        /// A file's `Checkpoint.fingerprint` (dictionary and options).
        case checkpoint(UInt64)
        /// A daemon's `Checkpoint.dictionaryFingerprint`.
        case dictionary(UInt64)
    }

    public let source: String
    public let key: PassKey
    public let state: [UInt8]
    public let duplicates: [Int64]
    public let identity: Identity

    public init(source: String, key: PassKey, state: [UInt8], duplicates: [Int64], identity: Identity) {
        self.source = source; self.key = key; self.state = state; self.duplicates = duplicates; self.identity = identity
    }
}

/// A merged pass: its snapshot (a row of docs/4-snapshots.md) and the sources it came from.
public struct MergedPass: Sendable {
    public let key: PassKey
    public let snapshot: LayerSnapshot
    public let sources: [String]
    public let duplicates: [Int64]
    /// What the log should say about the merge, e.g. that the merged pass has no baseline.
    public var notes: [String] = []
    /// Where the merge's time went (the README's scaling model uses them).
    public let timings: MergeTimings
}

/// Seconds `ShardMerge` spent on one pass: decoding the shards' states, merging them, and the
/// merged pass's snapshot.
public struct MergeTimings: Sendable, CustomStringConvertible {
    public var decode = 0.0, merge = 0.0, snapshot = 0.0
    public var description: String {
        String(format: "decoding %.3f s, merging %.3f s, snapshot %.3f s", decode, merge, snapshot)
    }
}

/// Merges the image shards of passes into one state per pass (`LayerAccumulator.merge`), after
/// checking that they agree: the dictionary (by fingerprint, against the one given), the options,
/// the units, the map size, disjoint images. Any disagreement throws, naming the pass, the sources
/// and what differs, before anything is merged.
public struct ShardMerge: Sendable {
    public let index: DictionaryIndex
    public let dictionaryFingerprint: UInt64

    public init(index: DictionaryIndex) {
        self.index = index
        dictionaryFingerprint = Checkpoint.dictionaryFingerprint(index)
    }

    /// Every pass of `shards`, merged, in (layer, run, step) order; `now` is the rows' time.
    public func merge(_ shards: [PassShard], now: Double) throws -> [MergedPass] {
        let byKey = Dictionary(grouping: shards, by: \.key)
        return try byKey.keys.sorted { ($0.layer, $0.run, $0.step) < ($1.layer, $1.run, $1.step) }.map { key in
            try merge(pass: key, byKey[key]!, now: now)
        }
    }

    func merge(pass key: PassKey, _ shards: [PassShard], now: Double) throws -> MergedPass {
        func fail(_ what: String) -> DaemonError { DaemonError("pass (\(key)): \(what); nothing merged, nothing written") }
        let headers = try shards.map { shard in
            do { return try LayerStateHeader(shard.state) } catch { throw fail("\(shard.source): \(error)") }
        }
        let options = headers[0].options
        for (shard, header) in zip(shards, headers) {
            if header.options != options {
                throw fail("\(shards[0].source) and \(shard.source) disagree: "
                           + MergeError.options(options, header.options).description)
            }
            try checkDictionary(shard, options: options, fail: fail)
        }
        var merged: LayerAccumulator?
        var withoutBaseline: [String] = []
        var timings = MergeTimings(), clock = ContinuousClock.now
        func lap() -> Double { let now = ContinuousClock.now; defer { clock = now }; return Double((now - clock) / .seconds(1)) }
        for shard in shards {
            let state: LayerAccumulator
            do { state = try LayerAccumulator(decoding: shard.state, index: index, options: options) } catch {
                throw fail("\(shard.source): \(error)")
            }
            timings.decode += lap()
            if state.baselineMaxima == nil { withoutBaseline.append(shard.source) }
            guard merged != nil else { merged = state; continue }
            do { try merged!.merge(state) } catch {
                throw fail("\(shard.source) cannot join \(shards.prefix { $0.source != shard.source }.map(\.source).joined(separator: ", ")): \(error)")
            }
            timings.merge += lap()
        }
        var snapshot = merged!.snapshot()
        timings.snapshot = lap()
        snapshot.run = key.run
        snapshot.step = key.step
        snapshot.timeUnix = now
        var pass = MergedPass(key: key, snapshot: snapshot, sources: shards.map(\.source), duplicates: shards.flatMap(\.duplicates),
                              timings: timings)
        if !withoutBaseline.isEmpty {
            pass.notes.append("pass (\(key)): no baseline pass (not tested beyond the untrained network): "
                              + (withoutBaseline.count == shards.count ? "no shard has one"
                                 : "\(withoutBaseline.joined(separator: ", ")) \(withoutBaseline.count == 1 ? "has" : "have") none"))
        }
        return pass
    }

    func checkDictionary(_ shard: PassShard, options: DissectionOptions, fail: (String) -> DaemonError) throws {
        switch shard.identity {
        case .checkpoint(let found):
            let expected = Checkpoint.fingerprint(index, options)
            guard found == expected else {
                throw fail("\(shard.source) was written for another dictionary than the one given (fingerprint "
                           + String(format: "%016llx, expected %016llx", found, expected) + ")")
            }
        case .dictionary(let found):
            guard found == dictionaryFingerprint else {
                throw fail("\(shard.source) serves another dictionary than the one given (fingerprint "
                           + String(format: "%016llx, expected %016llx", found, dictionaryFingerprint) + ")")
            }
        }
    }
}
