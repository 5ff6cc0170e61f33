import HNDEngine
import HNDStore
import HNDWire

/// All batches of one (run, layer, step) form a probe pass.
public struct PassKey: Hashable, Sendable, CustomStringConvertible {
    public var run: String
    public var layer: String
    public var step: Int64
    public init(run: String, layer: String, step: Int64) {
        self.run = run; self.layer = layer; self.step = step
    }
    public var description: String { "run \(run), layer \(layer), step \(step)" }
}

/// One probe pass being received: the engine state plus bookkeeping.
public struct OpenPass: Sendable {
    public let key: PassKey
    public var accumulator: LayerAccumulator
    public var startedAt: Double
    public var updatedAt: Double
    /// Repeated image ids, each counted once in the dissection and reported here.
    public var duplicates: [Int64] = []
    /// Images covered by the last checkpoint.
    public var imagesCheckpointed = 0
    /// Images covered by the last published snapshot.
    public var imagesPublished = -1
    /// Images the pass waits for, when not every image (a shard's share).
    public var expectedImages: Int?

    /// Seconds until the pass has every image, at the rate it has received them so far; nil
    /// while it has no rate yet.
    public var expectedSecondsToComplete: Double? {
        let seen = accumulator.imagesSeen, elapsed = updatedAt - startedAt
        guard seen > 0, elapsed > 0 else { return nil }
        return Double((expectedImages ?? accumulator.index.imageCount) - seen) / (Double(seen) / elapsed)
    }
}

/// The passes of a daemon: which are open, what each has seen, when each is due to be written.
/// Pure bookkeeping — no sockets, no files — so it is tested directly.
public struct PassBook: Sendable {
    public let index: DictionaryIndex
    public let options: DissectionOptions
    /// A pass with no batch for this long is written as incomplete.
    public var passTimeout: Double
    /// A pass is also written as incomplete once a newer step of its run and layer has been
    /// receiving batches for this long: the trainer has moved on.
    public var supersededAfter: Double

    public private(set) var open: [PassKey: OpenPass] = [:]
    /// Shape of each layer's maps, fixed by its first batch: a changing unit count is a client error.
    public private(set) var shapeOfLayer: [String: (units: Int, height: Int, width: Int)] = [:]
    public var unitsOfLayer: [String: Int] { shapeOfLayer.mapValues(\.units) }
    /// Passes already written, so late batches are refused instead of opening a new pass.
    public private(set) var finished: Set<PassKey> = []
    public private(set) var finishedCount: [String: Int] = [:]
    /// Per run's layer, the maxima [C, N] of its baseline pass (`PassBaselines.swift`).
    public internal(set) var baselines: [RunLayer: [Float]] = [:]
    /// What the change test needs of those baselines, built once each and kept in the daemon's
    /// one cache, which every worker's book shares (a reference in this value: the weights are
    /// the daemon's, the open passes this book's).
    public let baselineWeights: SharedBaselineWeights
    /// Run-layers of this book whose weights are wanted and not built (`takeBaselineWeightsJobs`).
    public internal(set) var pendingBaselineWeights: Set<RunLayer> = []
    /// The images this daemon holds, when it serves one share of them (nil: every image).
    public let shard: ImageShard?
    /// Images a pass waits for: the dictionary's, or the shard's share of them.
    public let expectedImages: Int

    public init(index: DictionaryIndex, options: DissectionOptions, passTimeout: Double, supersededAfter: Double,
                shard: ImageShard? = nil, baselineWeights: SharedBaselineWeights = SharedBaselineWeights()) {
        self.baselineWeights = baselineWeights
        self.index = index
        self.options = options
        self.passTimeout = passTimeout
        self.supersededAfter = supersededAfter
        self.shard = shard
        expectedImages = shard?.size(of: index.imageCount) ?? index.imageCount
    }

    /// Applies a batch to its pass, opening the pass if needed. Throws without changing any
    /// accumulator when the batch is bad.
    @discardableResult
    public mutating func ingest(_ key: PassKey, imageIDs: [Int64], units: Int, height: Int, width: Int,
                                values: UnsafeBufferPointer<Float>, now: Double) throws(Rejection) -> BatchOutcome {
        if finished.contains(key) {
            throw Rejection(reason: .passFinished, description: "\(key): this pass was already written; late batch ignored")
        }
        if let shard, let outside = imageIDs.firstIndex(where: { !shard.holds($0) }) {
            throw Rejection(reason: .notInShard, description: "\(key): image \(imageIDs[outside]) (position \(outside) in the batch) "
                            + "is not in this daemon's shard \(shard) (ids with id mod \(shard.count) = \(shard.index - 1))")
        }
        if key.run.utf8.count > SnapshotSchema.runBytes || key.run.utf8.contains(0) {
            throw Rejection(reason: .badName, description: "\(key): a run name is at most \(SnapshotSchema.runBytes) UTF-8 bytes without 0x00 (the snapshot file stores it so)")
        }
        if let expected = shapeOfLayer[key.layer]?.units, expected != units {
            throw Rejection(reason: .unitCountChanged, description: "\(key): layer \(key.layer) has \(expected) units, this batch has \(units)")
        }
        let isNew = open[key] == nil
        if isNew {
            open[key] = OpenPass(key: key, accumulator: LayerAccumulator(layer: key.layer, index: index, options: options),
                                 startedAt: now, updatedAt: now, expectedImages: expectedImages)
        }
        // Mutated in place: a copy taken out of the dictionary would share the accumulator's
        // buffers, and its first write would copy all of them — every batch.
        let outcome: BatchOutcome
        do {
            outcome = try open[key]!.accumulator.add(imageIDs: imageIDs, units: units, height: height, width: width, values: values)
        } catch {
            if isNew { open[key] = nil }
            throw Rejection(reason: RejectionReason(error), description: "\(key): \(error)")
        }
        open[key]!.updatedAt = now
        open[key]!.duplicates += outcome.duplicates
        shapeOfLayer[key.layer] = (units, height, width)
        if isNew {
            noteOpenPasses(of: RunLayer(key))
            attachBaseline(to: key)
        }
        return outcome
    }

    /// Restores a checkpointed pass.
    public mutating func restore(_ pass: OpenPass) {
        open[pass.key] = pass
        open[pass.key]!.expectedImages = expectedImages
        let a = pass.accumulator
        if a.units > 0 { shapeOfLayer[pass.key.layer] = (a.units, a.height, a.width) }
        noteOpenPasses(of: RunLayer(pass.key))
    }

    /// Passes to write now: complete ones, and incomplete ones timed out or superseded.
    public func due(now: Double) -> [PassKey] {
        open.values.filter { pass in
            if pass.accumulator.imagesSeen == expectedImages { return true }
            if now - pass.updatedAt >= passTimeout { return true }
            return open.values.contains { newer in
                newer.key.run == pass.key.run && newer.key.layer == pass.key.layer
                    && newer.key.step > pass.key.step && now - newer.startedAt >= supersededAfter
            }
        }.map(\.key).sorted { ($0.layer, $0.step) < ($1.layer, $1.step) }
    }

    /// Closes a pass and returns its final snapshot (complete or not), with the seconds of its phases.
    public mutating func finish(_ key: PassKey, now: Double) -> (pass: OpenPass, snapshot: LayerSnapshot, phases: SnapshotPhases)? {
        recordBaselineIfFirst(key)
        guard let pass = open.removeValue(forKey: key) else { return nil }
        noteOpenPasses(of: RunLayer(key))
        finished.insert(key)
        finishedCount[key.layer, default: 0] += 1
        let (snapshot, phases) = timedSnapshot(of: pass, now: now)
        return (pass, snapshot, phases)
    }

    public func snapshot(of pass: OpenPass, now: Double) -> LayerSnapshot { timedSnapshot(of: pass, now: now).snapshot }

    public func timedSnapshot(of pass: OpenPass, now: Double) -> (snapshot: LayerSnapshot, phases: SnapshotPhases) {
        var (s, _, phases) = pass.accumulator.timedSnapshot()
        s.run = pass.key.run
        s.step = pass.key.step
        s.timeUnix = now
        return (s, phases)
    }

    mutating func markFinished(_ key: PassKey) { finished.insert(key) }

    /// Forgets an open pass that the snapshot file already holds, and refuses its late batches.
    public mutating func dropWritten(_ key: PassKey) {
        if open.removeValue(forKey: key) != nil { noteOpenPasses(of: RunLayer(key)) }
        finished.insert(key)
    }

    public mutating func update(_ key: PassKey, _ change: (inout OpenPass) -> Void) {
        if var pass = open[key] { change(&pass); open[key] = pass }
    }
}
