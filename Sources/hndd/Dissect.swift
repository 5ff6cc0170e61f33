import ArgumentParser
import Foundation
import HNDEngine
import HNDStore

/// Offline dissection: the daemon's engine fed from an activations file (SPEC §2).
struct Dissect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dissect layers from an activations file and append one complete snapshot per layer.")

    @Option(help: "Face Dictionary file (SPEC §1).") var dictionary: String
    @Option(help: "Activations file (SPEC §2).") var activations: String
    @Option(help: "Snapshot file to create or append to (SPEC §4).") var out: String
    @Option(name: .customLong("layer"), help: "Layer to dissect (repeatable; default: every layer in the file).")
    var layers: [String] = []
    @OptionGroup var engine: EngineOptions
    @Option(name: .customLong("batch-size"), help: "Rows read and fed to the engine at a time.")
    var batchSize: Int = 256
    @Option(help: "Run name recorded in the snapshot file.") var run: String = "dissect"
    @Option(help: "Training step recorded in the snapshot file.") var step: Int64 = 0

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        try await reportingErrors {
            let dictionary = try DictionaryFile.load(self.dictionary)
            let index = DictionaryIndex(dictionary)
            let file = try ActivationsFile(activations)
            let names = layers.isEmpty ? try file.layerNames() : layers
            guard !names.isEmpty else { throw UserError("\(activations): /layers: no layers in this file") }
            // Check every layer before the long work starts.
            let plans = try names.map { name in try file.layer(name) }
            for plan in plans { try checkImageIDs(plan, imageCount: index.imageCount) }
            let output = try SnapshotFile(path: out, dictionary: dictionary)

            var snapshots: [LayerSnapshot] = []
            for plan in plans {
                let started = Date()
                var accumulator = LayerAccumulator(layer: plan.name, index: index, options: engine.dissection)
                var buffer: [Float] = []
                var reading = 0.0, adding = 0.0
                for start in stride(from: 0, to: plan.rows, by: batchSize) {
                    let count = min(batchSize, plan.rows - start)
                    let readStarted = Date()
                    try file.readRows(plan, start: start, count: count, into: &buffer)
                    reading += Date().timeIntervalSince(readStarted)
                    let ids = Array(plan.imageIDs[start..<(start + count)])
                    let addStarted = Date()
                    defer { adding += Date().timeIntervalSince(addStarted) }
                    do {
                        try buffer.withUnsafeBufferPointer { values throws(BatchError) in
                            try accumulator.add(imageIDs: ids, units: plan.units, height: plan.height, width: plan.width, values: values)
                        }
                    } catch {
                        throw UserError("\(activations): \(plan.dataset): rows \(start)..<\(start + count): \(error)")
                    }
                }
                let snapshotStarted = Date()
                var snapshot = accumulator.snapshot()
                let snapshotting = Date().timeIntervalSince(snapshotStarted)
                snapshot.run = run
                snapshot.step = step
                snapshot.timeUnix = Date().timeIntervalSince1970
                snapshots.append(snapshot)
                let seconds = Date().timeIntervalSince(started)
                print("\(plan.name): \(plan.rows) images × \(plan.units) units × \(plan.height)×\(plan.width) in "
                      + String(format: "%.2f s (%.0f images/s; reading %.2f s, engine %.2f s, snapshot %.2f s",
                               seconds, Double(plan.rows) / max(seconds, 1e-9), reading, adding, snapshotting)
                      + "; kernels \(EngineKernels.path)); "
                      + "interpretable \(snapshot.interpretableUnits), localised \(snapshot.region.filter { $0 >= 0 }.count), "
                      + "Network Dissection \(snapshot.netdissectUnits) of \(snapshot.units) units"
                      + (snapshot.complete ? "" : "; incomplete: \(snapshot.imagesSeen) of \(snapshot.imagesTotal) images"))
            }
            try output.append(snapshots)
        }
    }

    /// Image ids must be dictionary images, each at most once.
    func checkImageIDs(_ plan: ActivationsFile.Layer, imageCount: Int) throws {
        var firstRow = [Int: Int]()
        let where_ = "\(activations): /layers/\(plan.name)/image_ids"
        for (row, id) in plan.imageIDs.enumerated() {
            guard id >= 0, id < imageCount else {
                throw UserError("\(where_): row \(row): image id \(id) is out of range 0..<\(imageCount) (the dictionary's images)")
            }
            if let earlier = firstRow[Int(id)] {
                throw UserError("\(where_): image id \(id) is repeated (rows \(earlier) and \(row))")
            }
            firstRow[Int(id)] = row
        }
    }
}
