import HNDEngine

/// The change test's weights of the run-layers' baselines (`BaselineWeights`), built once per
/// baseline instead of at every complete snapshot, and kept for at most `limit` run-layers of the
/// whole daemon (its layer workers share one cache: `SharedBaselineWeights`): each costs
/// C × (labelled images per distinct D_g) doubles (≈ 45 MB at 512 units, 180 MB at 2,048 on the
/// face dictionary; docs/performance.md). Past the limit the least recently used run-layer with no
/// open pass loses them (its baseline maxima stay: a later pass of it builds them again). One with
/// an open pass is spared: that pass holds the weights anyway, so dropping them would free nothing
/// and cost a rebuild; the cache shrinks back to the limit when such a pass ends.
public struct BaselineWeightsCache: Sendable {
    public let limit: Int
    public private(set) var kept: [RunLayer: BaselineWeights] = [:]
    /// Run-layers with an open pass on some worker, as their books last said (`setOpen`).
    public private(set) var open: Set<RunLayer> = []
    private var lastUsed: [RunLayer: UInt64] = [:]
    private var clock: UInt64 = 0

    public init(limit: Int) { self.limit = limit }

    /// Bytes of every kept weight set.
    public var bytes: Int { kept.values.reduce(0) { $0 + $1.bytes } }

    /// The weights of `runLayer`, marked as used; nil when not built (or dropped).
    mutating func use(_ runLayer: RunLayer) -> BaselineWeights? {
        guard let weights = kept[runLayer] else { return nil }
        clock += 1
        lastUsed[runLayer] = clock
        return weights
    }

    /// Keeps newly built weights, then drops the least recently used beyond the limit.
    mutating func keep(_ weights: BaselineWeights, for runLayer: RunLayer) {
        kept[runLayer] = weights
        _ = use(runLayer)
        trim()
    }

    /// Whether `runLayer` has an open pass (its book says so whenever that changes); a run-layer
    /// that no longer has one may be dropped at once, when the cache is beyond its limit.
    mutating func setOpen(_ isOpen: Bool, _ runLayer: RunLayer) {
        if isOpen { open.insert(runLayer) } else if open.remove(runLayer) != nil { trim() }
    }

    private mutating func trim() {
        while kept.count > limit, let oldest = kept.keys.filter({ !open.contains($0) }).min(by: { lastUsed[$0]! < lastUsed[$1]! }) {
            kept[oldest] = nil
            lastUsed[oldest] = nil
        }
    }
}
