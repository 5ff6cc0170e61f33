import HNDEngine

/// A run's layer: the passes that share a baseline pass.
public struct RunLayer: Hashable, Sendable, CustomStringConvertible {
    public var run: String
    public var layer: String
    public init(run: String, layer: String) { self.run = run; self.layer = layer }
    public init(_ key: PassKey) { self.init(run: key.run, layer: key.layer) }
    public var description: String { "run \(run), layer \(layer)" }
}

/// "Biased beyond the untrained network" (docs/3-numbers.md): each run's layer keeps the maxima
/// of its first complete pass (for an image shard: its first pass with its whole share), and
/// every later pass of it is tested against them.
extension PassBook {
    /// Gives a pass the baseline of its run's layer, when there is one and the pass has none,
    /// with the baseline's weights when they are built (else they are wanted:
    /// `takeBaselineWeightsJobs`).
    mutating func attachBaseline(to key: PassKey) {
        let runLayer = RunLayer(key)
        guard let baseline = baselines[runLayer], open[key]?.accumulator.baselineMaxima == nil else { return }
        let weights = wantsBaselineWeights ? keptBaselineWeights(of: runLayer) : nil
        // A pass of another shape cannot use it (the unit count of a layer is fixed, so this is
        // only a pass whose first batch was refused).
        update(key) { try? $0.accumulator.setBaseline(maxima: baseline, weights: weights) }
    }

    /// When `key` is the first pass of its run's layer to hold every expected image, its maxima
    /// become the baseline: of itself (its change p-values are then 1, without weights) and of
    /// the later passes already open.
    mutating func recordBaselineIfFirst(_ key: PassKey) {
        let runLayer = RunLayer(key)
        guard baselines[runLayer] == nil, let pass = open[key], pass.accumulator.imagesSeen == expectedImages,
              pass.accumulator.units > 0 else { return }
        baselines[runLayer] = pass.accumulator.maxima
        if wantsBaselineWeights { _ = keptBaselineWeights(of: runLayer) }
        for other in open.keys where RunLayer(other) == runLayer { attachBaseline(to: other) }
    }

    /// Restores the baselines a checkpoint holds.
    mutating func restoreBaselines(_ restored: [RunLayer: [Float]]) {
        for (runLayer, maxima) in restored where baselines[runLayer] == nil { baselines[runLayer] = maxima }
        for key in open.keys { attachBaseline(to: key) }
    }

    /// Only a daemon of every image makes complete snapshots, the only ones with the change test:
    /// an image shard's (merged by `hndd merge`) never needs the weights.
    var wantsBaselineWeights: Bool { expectedImages == index.imageCount }

    /// The kept weights of `runLayer`'s baseline, marked as used; when there are none, they are
    /// wanted.
    private mutating func keptBaselineWeights(of runLayer: RunLayer) -> BaselineWeights? {
        if let weights = baselineWeights.update({ $0.use(runLayer) }) { return weights }
        pendingBaselineWeights.insert(runLayer)
        return nil
    }

    /// Tells the daemon's weights cache whether `runLayer` has an open pass here (one whose
    /// weights it must not drop), after this book opened or closed one of its passes.
    mutating func noteOpenPasses(of runLayer: RunLayer) {
        let isOpen = open.keys.contains { RunLayer($0) == runLayer }
        baselineWeights.update { $0.setOpen(isOpen, runLayer) }
    }

    /// The weights wanted now, as builds to run anywhere (`BaselineWeightsJob.build`); no longer
    /// pending. Their results come back through `attachBaselineWeights`.
    public mutating func takeBaselineWeightsJobs() -> [BaselineWeightsJob] {
        let wanted = pendingBaselineWeights
        pendingBaselineWeights = []
        return wanted.sorted { ($0.run, $0.layer) < ($1.run, $1.layer) }.compactMap { runLayer in
            baselines[runLayer].map { BaselineWeightsJob(runLayer: runLayer, maxima: $0, index: index) }
        }
    }

    /// Keeps the weights built for `runLayer`'s baseline in the daemon's cache and gives them to
    /// its open passes that have the baseline but not yet its weights. nil (the build failed:
    /// a baseline of another shape) keeps nothing; each snapshot then builds its own, as before.
    public mutating func attachBaselineWeights(_ weights: BaselineWeights?, for runLayer: RunLayer) {
        guard let weights, let maxima = baselines[runLayer] else { return }
        baselineWeights.update { $0.keep(weights, for: runLayer) }
        for key in open.keys where RunLayer(key) == runLayer && open[key]?.accumulator.baselineMaxima != nil {
            update(key) { try? $0.accumulator.setBaseline(maxima: maxima, weights: weights) }
        }
    }
}
