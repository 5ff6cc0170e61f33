import Foundation
import HNDEngine

/// What building one baseline's weights needs: a value, so the build can run on any thread.
/// The weights are a function of the maxima alone, so where and when they are built does not
/// change a single bit of any snapshot.
public struct BaselineWeightsJob: Sendable {
    public let runLayer: RunLayer
    let maxima: [Float]
    let index: DictionaryIndex

    /// nil when the maxima fit no layer of the dictionary (cannot happen for a recorded baseline).
    public func build() -> BaselineWeights? {
        try? BaselineWeights(maxima: maxima, units: maxima.count / max(1, index.imageCount), index: index)
    }
}

/// A layer worker's build of one baseline's weights, running off the worker's thread (0.3–0.5 s
/// at 512 units: on the worker it held up the layer's next batches). The worker takes the result
/// when it is done, or waits for it before a complete snapshot that needs it.
final class BaselineWeightsBuild: @unchecked Sendable {
    let job: BaselineWeightsJob
    private let condition = NSCondition()
    private var built: (weights: BaselineWeights?, seconds: Double)?

    init(_ job: BaselineWeightsJob) { self.job = job }

    /// Builds the weights; on whichever thread runs it.
    func run() {
        let started = Date().timeIntervalSince1970
        let weights = job.build()
        condition.lock()
        built = (weights, Date().timeIntervalSince1970 - started)
        condition.broadcast()
        condition.unlock()
    }

    /// The weights and the seconds their build took, once built; nil while it runs.
    var result: (weights: BaselineWeights?, seconds: Double)? {
        condition.lock(); defer { condition.unlock() }
        return built
    }

    /// The same, waiting for the build to end.
    func wait() -> (weights: BaselineWeights?, seconds: Double) {
        condition.lock(); defer { condition.unlock() }
        while built == nil { condition.wait() }
        return built!
    }
}
