import HNDEngine

/// The change test's weights of the run-layers' baselines (`BaselineWeights`), built once per
/// baseline instead of at every complete snapshot, and kept for at most `limit` run-layers: each
/// costs C × (labelled images per distinct D_g) doubles (≈ 45 MB at 512 units, 180 MB at 2,048
/// on the face dictionary; docs/performance.md). Past the limit the least recently used run-layer
/// with no open pass loses them (its baseline maxima stay: a later pass of it builds them again).
public struct BaselineWeightsCache: Sendable {
    public var limit: Int
    public private(set) var kept: [RunLayer: BaselineWeights] = [:]
    /// Run-layers whose open or next passes want weights not built yet.
    public private(set) var pending: Set<RunLayer> = []
    private var lastUsed: [RunLayer: UInt64] = [:]
    private var clock: UInt64 = 0

    public init(limit: Int) { self.limit = limit }

    /// Bytes of every kept weight set.
    public var bytes: Int { kept.values.reduce(0) { $0 + $1.bytes } }

    /// The weights of `runLayer`, marked as used; nil (and wanted) when not built.
    mutating func use(_ runLayer: RunLayer) -> BaselineWeights? {
        guard let weights = kept[runLayer] else { pending.insert(runLayer); return nil }
        clock += 1
        lastUsed[runLayer] = clock
        return weights
    }

    /// Keeps newly built weights, then drops the least recently used beyond the limit, sparing
    /// `busy` (run-layers with an open pass: those hold the weights anyway).
    mutating func keep(_ weights: BaselineWeights, for runLayer: RunLayer, sparing busy: Set<RunLayer>) {
        kept[runLayer] = weights
        pending.remove(runLayer)
        _ = use(runLayer)
        while kept.count > limit, let oldest = kept.keys.filter({ !busy.contains($0) }).min(by: { lastUsed[$0]! < lastUsed[$1]! }) {
            kept[oldest] = nil
            lastUsed[oldest] = nil
        }
    }

    mutating func forget(_ runLayer: RunLayer) { pending.remove(runLayer) }
}
