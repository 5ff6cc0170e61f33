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
    /// where the time went.
    public func dissect(_ plan: ActivationsFile.Layer, run: String = Self.defaultRun,
                        step: Int64 = Self.defaultStep) throws(StoreError) -> (snapshot: LayerSnapshot, phases: Phases) {
        let started = Date()
        var phases = Phases()
        var accumulator = LayerAccumulator(layer: plan.name, index: index, options: options)
        var buffer: [Float] = []
        for start in stride(from: 0, to: plan.rows, by: batchSize) {
            let count = min(batchSize, plan.rows - start)
            let readStarted = Date()
            try activations.readRows(plan, start: start, count: count, into: &buffer)
            phases.reading += Date().timeIntervalSince(readStarted)
            let ids = Array(plan.imageIDs[start..<(start + count)])
            let addStarted = Date()
            defer { phases.engine += Date().timeIntervalSince(addStarted) }
            do {
                _ = try buffer.withUnsafeBufferPointer { values throws(BatchError) in
                    try accumulator.add(imageIDs: ids, units: plan.units, height: plan.height, width: plan.width, values: values)
                }
            } catch {
                throw StoreError(file: activations.path, object: plan.dataset, message: "rows \(start)..<\(start + count): \(error)")
            }
        }
        let snapshotStarted = Date()
        var (snapshot, raw) = accumulator.snapshotWithRawPValues()
        phases.snapshot = Date().timeIntervalSince(snapshotStarted)
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
}
