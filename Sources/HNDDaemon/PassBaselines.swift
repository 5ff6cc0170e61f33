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
    /// with the baseline's weights when they are built (`prepareBaselineWeights` builds them).
    mutating func attachBaseline(to key: PassKey) {
        let runLayer = RunLayer(key)
        guard let baseline = baselines[runLayer], open[key]?.accumulator.baselineMaxima == nil else { return }
        let weights = wantsBaselineWeights ? baselineWeights.use(runLayer) : nil
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
        if wantsBaselineWeights { _ = baselineWeights.use(runLayer) }
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

    /// Builds the weights of the baselines that want them and gives them to their open passes.
    /// Called off the latency path (after the due passes are written); returns what it built,
    /// with the seconds it took.
    public mutating func prepareBaselineWeights(clock: () -> Double) -> [(runLayer: RunLayer, bytes: Int, seconds: Double)] {
        var built: [(RunLayer, Int, Double)] = []
        for runLayer in baselineWeights.pending {
            guard let maxima = baselines[runLayer] else { baselineWeights.forget(runLayer); continue }
            let started = clock()
            guard let weights = try? BaselineWeights(maxima: maxima, units: maxima.count / max(1, index.imageCount), index: index) else {
                baselineWeights.forget(runLayer)
                continue
            }
            baselineWeights.keep(weights, for: runLayer, sparing: Set(open.keys.map(RunLayer.init)))
            for key in open.keys where RunLayer(key) == runLayer && open[key]?.accumulator.baselineMaxima != nil {
                update(key) { try? $0.accumulator.setBaseline(maxima: maxima, weights: weights) }
            }
            built.append((runLayer, weights.bytes, clock() - started))
        }
        return built
    }
}
