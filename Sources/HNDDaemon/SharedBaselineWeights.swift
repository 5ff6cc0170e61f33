import Foundation

/// The daemon's one `BaselineWeightsCache`, which every layer worker's `PassBook` holds, so that
/// `serve --keep-baseline-weights N` bounds the weights the daemon keeps, not each worker's (a
/// cache per worker kept up to 8 × N). Each use takes the lock for a look-up or two; weights are
/// built outside it (`BaselineWeightsBuild`), so no worker waits for another's build.
public final class SharedBaselineWeights: @unchecked Sendable {
    private let lock = NSLock()
    private var cache: BaselineWeightsCache

    public init(limit: Int = DaemonConfiguration.Defaults.keptBaselineWeights) { cache = BaselineWeightsCache(limit: limit) }

    /// The cache as it is now (a copy: the weights' buffers are shared, not copied).
    public var now: BaselineWeightsCache {
        lock.lock(); defer { lock.unlock() }
        return cache
    }

    func update<R>(_ change: (inout BaselineWeightsCache) -> R) -> R {
        lock.lock(); defer { lock.unlock() }
        return change(&cache)
    }
}
