import Foundation
import HNDEngine

/// Offline dissection (`hndd dissect`): the daemon's engine fed from an activations file
/// (docs/2-activations.md), one layer at a time, in batches of rows read from the file.
public struct OfflineDissection {
    /// Rows read and fed to the engine at a time.
    public static let defaultBatchSize = 256
    /// Run name and training step recorded in the snapshot file.
    public static let defaultRun = "dissect"
    public static let defaultStep: Int64 = 0

    /// Where one layer's time went, in seconds: reading the file, the engine's ingest, the final
    /// snapshot, and all of it.
    public struct Phases: Sendable {
        public var reading = 0.0, engine = 0.0, snapshot = 0.0, total = 0.0
        /// CPU seconds of the final snapshot, over all threads: what it costs on a shared machine,
        /// where its wall time depends on the other loads.
        public var snapshotCPU = 0.0
        /// The snapshot's seconds phase by phase (the engine's).
        public var snapshotPhases = SnapshotPhases()
        /// With a baseline: seconds to build its weights for the change test (`BaselineWeights`),
        /// once, before the snapshot; their bytes.
        public var baselineWeights: (seconds: Double, bytes: Int)?
        /// With `permutations` > 0: the explicit permutation check of the analytic p-values.
        public var check: PermutationAgreement?
    }

    /// Raw analytic p-values against B explicit permutations (`permutationPValues`), over every
    /// tested pair: the largest difference, and how long the permutations took.
    public struct PermutationAgreement: Sendable {
        public var permutations = 0, pairs = 0
        public var worstDifference = 0.0, seconds = 0.0

        init(analytic: RawPValues, permuted: RawPValues, permutations b: Int, seconds: Double) {
            permutations = b
            self.seconds = seconds
            for (a, e) in zip(analytic.global + analytic.local, permuted.global + permuted.local) where !a.isNaN && !e.isNaN {
                pairs += 1
                worstDifference = max(worstDifference, abs(a - e))
            }
        }
    }

    public let index: DictionaryIndex
    public let activations: ActivationsFile
    public let options: DissectionOptions
    public let batchSize: Int
    /// B of the permutation check after each complete snapshot; 0 for none.
    public let permutations: Int

    public init(dictionary: FaceDictionary, activations: ActivationsFile, options: DissectionOptions = .init(),
                batchSize: Int = Self.defaultBatchSize, permutations: Int = 0) {
        index = DictionaryIndex(dictionary)
        self.activations = activations
        self.options = options
        self.batchSize = max(1, batchSize)
        self.permutations = max(0, permutations)
    }

    /// The layers to dissect (every layer of the file when `requested` is empty), each checked —
    /// its shape and image ids — before the long work starts.
    public func plans(_ requested: [String]) throws(StoreError) -> [ActivationsFile.Layer] {
        let names = requested.isEmpty ? try activations.layerNames() : requested
        guard !names.isEmpty else { throw StoreError(file: activations.path, object: "/layers", message: "no layers in this file") }
        var plans: [ActivationsFile.Layer] = []
        for name in names {
            let plan = try activations.layer(name)
            try checkImageIDs(plan)
            plans.append(plan)
        }
        return plans
    }

    /// Image ids must be dictionary images, each at most once.
    func checkImageIDs(_ plan: ActivationsFile.Layer) throws(StoreError) {
        var firstRow = [Int64: Int]()
        let object = "/layers/\(plan.name)/image_ids"
        for (row, id) in plan.imageIDs.enumerated() {
            guard id >= 0, id < Int64(index.imageCount) else {
                throw StoreError(file: activations.path, object: object,
                                 message: "row \(row): image id \(id) is out of range 0..<\(index.imageCount) (the dictionary's images)")
            }
            if let earlier = firstRow[id] {
                throw StoreError(file: activations.path, object: object, message: "image id \(id) is repeated (rows \(earlier) and \(row))")
            }
            firstRow[id] = row
        }
    }

    /// Every row of one layer through the engine: its snapshot (recorded as `run`, `step`) and
    /// where the time went. With `baseline` (another activations file of the same images and
    /// layer, e.g. the untrained network's), the snapshot also tests "biased beyond the untrained
    /// network" against it.
    public func dissect(_ plan: ActivationsFile.Layer, run: String = Self.defaultRun, step: Int64 = Self.defaultStep,
                        baseline: ActivationsFile? = nil) throws(StoreError) -> (snapshot: LayerSnapshot, phases: Phases) {
        let started = Date()
        var phases = Phases()
        // The baseline first, so that only its maxima stay in memory while the layer is fed.
        let baselineMaxima = try baseline.map { file throws(StoreError) in try self.baselineMaxima(plan, from: file) }
        var accumulator = try feed(plan, from: activations, phases: &phases)
        if let baseline, let baselineMaxima {
            do { try accumulator.setBaseline(maxima: baselineMaxima) } catch {
                throw StoreError(file: baseline.path, object: "/layers/\(plan.name)/activations",
                                 message: "as the baseline of \(activations.path): \(error)")
            }
            let weightsStarted = Date()
            if let weights = accumulator.buildBaselineWeights() {
                phases.baselineWeights = (Date().timeIntervalSince(weightsStarted), weights.bytes)
            }
        }
        let snapshotStarted = Date(), cpuStarted = ProcessCPU.seconds()
        var (snapshot, raw, snapshotPhases) = accumulator.timedSnapshot()
        phases.snapshotPhases = snapshotPhases
        phases.snapshot = Date().timeIntervalSince(snapshotStarted)
        phases.snapshotCPU = ProcessCPU.seconds() - cpuStarted
        if permutations > 0, let raw {
            let checkStarted = Date()
            let permuted = accumulator.permutationPValues(of: snapshot, permutations: permutations, seed: 1)
            phases.check = PermutationAgreement(analytic: raw, permuted: permuted, permutations: permutations,
                                                seconds: Date().timeIntervalSince(checkStarted))
        }
        snapshot.run = run
        snapshot.step = step
        snapshot.timeUnix = Date().timeIntervalSince1970
        phases.total = Date().timeIntervalSince(started)
        return (snapshot, phases)
    }

    /// The maxima [C, N] of layer `plan.name` in `file`, which must hold every dictionary image.
    func baselineMaxima(_ plan: ActivationsFile.Layer, from file: ActivationsFile) throws(StoreError) -> [Float] {
        let basePlan = try file.layer(plan.name)
        guard basePlan.units == plan.units else {
            throw StoreError(file: file.path, object: basePlan.dataset,
                             message: "has \(basePlan.units) units, the layer in \(activations.path) has \(plan.units): not its baseline")
        }
        var ignored = Phases()
        let base = try feed(basePlan, from: file, phases: &ignored)
        guard base.imagesSeen == index.imageCount else {
            throw StoreError(file: file.path, object: basePlan.dataset,
                             message: "holds \(base.imagesSeen) of the dictionary's \(index.imageCount) images: a baseline pass must hold every image")
        }
        return base.maxima
    }

    /// A fresh accumulator fed every row of `plan` from `file`, in batches.
    func feed(_ plan: ActivationsFile.Layer, from file: ActivationsFile, phases: inout Phases) throws(StoreError) -> LayerAccumulator {
        var accumulator = LayerAccumulator(layer: plan.name, index: index, options: options)
        var buffer: [Float] = []
        for start in stride(from: 0, to: plan.rows, by: batchSize) {
            let count = min(batchSize, plan.rows - start)
            let readStarted = Date()
            try file.readRows(plan, start: start, count: count, into: &buffer)
            phases.reading += Date().timeIntervalSince(readStarted)
            let ids = Array(plan.imageIDs[start..<(start + count)])
            let addStarted = Date()
            defer { phases.engine += Date().timeIntervalSince(addStarted) }
            do {
                _ = try buffer.withUnsafeBufferPointer { values throws(BatchError) in
                    try accumulator.add(imageIDs: ids, units: plan.units, height: plan.height, width: plan.width, values: values)
                }
            } catch {
                throw StoreError(file: file.path, object: plan.dataset, message: "rows \(start)..<\(start + count): \(error)")
            }
        }
        return accumulator
    }
}
