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
    /// Gives a pass the baseline of its run's layer, when there is one and the pass has none.
    mutating func attachBaseline(to key: PassKey) {
        guard let baseline = baselines[RunLayer(key)], open[key]?.accumulator.baselineMaxima == nil else { return }
        // A pass of another shape cannot use it (the unit count of a layer is fixed, so this is
        // only a pass whose first batch was refused).
        update(key) { try? $0.accumulator.setBaseline(maxima: baseline) }
    }

    /// When `key` is the first pass of its run's layer to hold every expected image, its maxima
    /// become the baseline: of itself (its change p-values are then 1) and of the later passes
    /// already open.
    mutating func recordBaselineIfFirst(_ key: PassKey) {
        let runLayer = RunLayer(key)
        guard baselines[runLayer] == nil, let pass = open[key], pass.accumulator.imagesSeen == expectedImages,
              pass.accumulator.units > 0 else { return }
        baselines[runLayer] = pass.accumulator.maxima
        for other in open.keys where RunLayer(other) == runLayer { attachBaseline(to: other) }
    }

    /// Restores the baselines a checkpoint holds.
    mutating func restoreBaselines(_ restored: [RunLayer: [Float]]) {
        for (runLayer, maxima) in restored where baselines[runLayer] == nil { baselines[runLayer] = maxima }
        for key in open.keys { attachBaseline(to: key) }
    }
}
