import ArgumentParser
import Foundation
import HNDEngine
import HNDStore

/// Offline dissection: the daemon's engine fed from an activations file (docs/2-activations.md).
struct Dissect: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dissect layers from an activations file and append one complete snapshot per layer.")

    @Option(help: "Face Dictionary file (docs/1-dictionary.md).") var dictionary: String
    @Option(help: "Activations file (docs/2-activations.md).") var activations: String
    @Option(help: "Snapshot file to create or append to (docs/4-snapshots.md).") var out: String
    @Option(name: .customLong("layer"), help: "Layer to dissect (repeatable; default: every layer in the file).")
    var layers: [String] = []
    @OptionGroup var engine: EngineOptions
    @Option(name: .customLong("batch-size"), help: "Rows read and fed to the engine at a time.")
    var batchSize: Int = OfflineDissection.defaultBatchSize
    @Option(help: "Run name recorded in the snapshot file.") var run: String = OfflineDissection.defaultRun
    @Option(help: "Training step recorded in the snapshot file.") var step: Int64 = OfflineDissection.defaultStep
    @Option(name: .customLong("check-permutations"),
            help: "Also compute the raw p-values by B explicit permutations (sgemm) and print how far the analytic ones are (0: no check).")
    var permutations: Int = 0
    @Option(help: "Activations file of the run's baseline pass (the same images and layers, e.g. the untrained network): also test \"biased beyond the untrained network\" against it.")
    var baseline: String?
    @Option(name: .customLong("keep-partials"), help: "Retention: each layer of --out keeps every complete row and only its latest N incomplete ones.")
    var keepPartials: Int?

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard permutations >= 0 else { throw ValidationError("--check-permutations must be 0 or more") }
        if let keepPartials, keepPartials < 0 { throw ValidationError("--keep-partials must be 0 or more, got \(keepPartials)") }
    }

    func execute() async throws {
        let dictionary = try DictionaryFile.load(self.dictionary)
        let dissection = OfflineDissection(dictionary: dictionary, activations: try ActivationsFile(activations),
                                           options: engine.dissection, batchSize: batchSize, permutations: permutations)
        let plans = try dissection.plans(layers)
        let baselineFile = try baseline.map { try ActivationsFile($0) }
        let output = try SnapshotFile(path: out, dictionary: dictionary, keepPartials: keepPartials)
        var snapshots: [LayerSnapshot] = []
        for plan in plans {
            let (snapshot, phases) = try dissection.dissect(plan, run: run, step: step, baseline: baselineFile)
            snapshots.append(snapshot)
            let counts = SnapshotSummary(snapshot, taxonomy: dictionary)
            print("\(plan.name): \(plan.rows) images × \(plan.units) units × \(plan.height)×\(plan.width) in "
                  + String(format: "%.2f s (%.0f images/s; reading %.2f s, engine %.2f s, snapshot %.2f s (CPU %.2f s)",
                           phases.total, Double(plan.rows) / max(phases.total, 1e-9), phases.reading, phases.engine, phases.snapshot,
                           phases.snapshotCPU)
                  + "; kernels \(EngineKernels.path)); "
                  + "interpretable \(counts.interpretable), localised \(counts.localised), "
                  + "Network Dissection \(counts.netdissect) of \(counts.units) units"
                  + (counts.significant.map { "; significant: interpretable \($0.interpretable), biased \($0.biased), paired \($0.paired)" } ?? "")
                  + (counts.beyondUntrained.map { "; biased beyond the untrained network \($0.units)" } ?? "")
                  + (snapshot.complete ? "" : "; incomplete: \(snapshot.imagesSeen) of \(snapshot.imagesTotal) images"))
            print("\(plan.name): snapshot phases: "
                  + phases.snapshotPhases.printedFields.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
            if let weights = phases.baselineWeights {
                print("\(plan.name): baseline weights for the change test built once in "
                      + String(format: "%.2f s (%.1f MB)", weights.seconds, Double(weights.bytes) / 1e6))
            }
            if let check = phases.check {
                print("\(plan.name): permutation check, B = \(check.permutations): \(check.pairs) tested pairs, largest |analytic − permutation| "
                      + String(format: "%.4f, %.2f s", check.worstDifference, check.seconds))
            }
        }
        try output.append(snapshots)
    }
}
