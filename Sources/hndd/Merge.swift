import ArgumentParser
import Foundation
import HNDDaemon
import HNDEngine
import HNDStore

/// `hndd merge`: the image shards of passes, from state files or running daemons, merged exactly
/// into one snapshot per pass (README § Clusters).
struct Merge: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the image shards of probe passes into one snapshot per pass; append the rows and/or print their counts.",
        discussion: """
        Sources: --state FILE (a daemon's checkpoint.hndd, or a shard's kept pass in RUN-DIR/shards), --peer ENDPOINT \
        (a running daemon's control endpoint; --peer-key FILE for one on TCP), --cluster FILE (every daemon serving \
        --layer). Shards that disagree on the dictionary (by fingerprint, against --dictionary), options, units, map \
        size, or that share images, are refused with the reason: nothing is written.
        """)

    @Option(help: "The Face Dictionary the shards were made with (docs/1-dictionary.md).") var dictionary: String
    @Option(name: .customLong("state"), help: "A checkpoint or shard state file (repeatable).") var states: [String] = []
    @Option(name: .customLong("peer"), help: "A running daemon's control endpoint (repeatable).") var peers: [String] = []
    @Option(name: .customLong("peer-key"), help: "Credential for the --peer daemons on TCP.") var peerKey: String?
    @Option(help: "Cluster file: merge from every daemon that serves --layer.") var cluster: String?
    @Option(help: "Only passes of this layer.") var layer: String?
    @Option(help: "Only passes of this run.") var run: String?
    @Option(help: "Only passes of this step.") var step: Int64?
    @Option(help: "Snapshot file to append the merged rows to (docs/4-snapshots.md).") var out: String?
    @Flag(help: "Print one JSON object per merged pass (the keys of `subscribe --json`).") var json = false
    @Option(help: "Seconds to wait for each daemon.") var timeout: Double = 30

    func validate() throws {
        guard !states.isEmpty || !peers.isEmpty || cluster != nil else { throw ValidationError("give --state, --peer or --cluster sources") }
        if cluster != nil, layer == nil { throw ValidationError("--cluster needs --layer (the cluster file routes by layer)") }
    }

    func execute() async throws {
        let dictionary = try DictionaryFile.load(self.dictionary)
        let selection = PassSelection(layer: layer, run: run, step: step)
        let started = ContinuousClock.now
        let (shards, sourceCount) = try collect(selection)
        let collected = Double((ContinuousClock.now - started) / .seconds(1))
        let merged = try ShardMerge(index: DictionaryIndex(dictionary)).merge(shards, now: Date().timeIntervalSince1970)
        for pass in merged {
            let bytes = shards.filter { $0.key == pass.key }.reduce(0) { $0 + $1.state.count }
            let read = String(format: "%.1f MB of state read in %.3f s (all sources)", Double(bytes) / 1e6, collected)
            FileHandle.standardError.write(Data("hndd merge: pass (\(pass.key)): \(pass.sources.count) shards, \(read); \(pass.timings)\n".utf8))
            for note in pass.notes { FileHandle.standardError.write(Data("hndd merge: \(note)\n".utf8)) }
        }
        for pass in merged where pass.sources.count < sourceCount {
            FileHandle.standardError.write(Data("hndd: warning: pass (\(pass.key)) was found in \(pass.sources.count) of \(sourceCount) sources\n".utf8))
        }
        if let out { try SnapshotFile(path: out, dictionary: dictionary).append(merged.map(\.snapshot)) }
        for pass in merged {
            let summary = SnapshotSummary(pass.snapshot, taxonomy: dictionary)
            if json {
                print(SummaryJSON.line(pass.snapshot, complete: pass.snapshot.complete, summary: summary, changes: [],
                                       duplicates: pass.duplicates.count))
            } else {
                let s = pass.snapshot
                print("\(s.layer) run \(s.run) step \(s.step): \(s.imagesSeen)/\(s.imagesTotal) images from \(pass.sources.count) shards"
                      + (s.complete ? "" : " (partial)") + "; interpretable \(summary.interpretable), localised \(summary.localised), "
                      + "Network Dissection \(summary.netdissect) of \(summary.units) units" + (out.map { "; appended to \($0)" } ?? ""))
            }
        }
    }

    /// The shards of every source, and how many sources there were.
    func collect(_ selection: PassSelection) throws -> ([PassShard], Int) {
        var shards = try states.flatMap { try ShardSources.file($0, selection: selection) }
        let credential = try peerKey.map(CredentialLoading.load)
        shards += try peers.flatMap { peer in
            try ShardSources.daemon(peer, control: peer, credential: credential, selection: selection, timeout: timeout)
        }
        var count = states.count + peers.count
        if let cluster, let layer {
            let file = try ClusterFile(cluster)
            let serving = try file.daemons(serving: layer)
            for daemon in serving {
                shards += try ShardSources.daemon(daemon.name, control: daemon.endpoints.control, credential: try file.credential(of: daemon),
                                                  selection: selection, timeout: timeout)
            }
            count += serving.count
        }
        return (shards, count)
    }
}
