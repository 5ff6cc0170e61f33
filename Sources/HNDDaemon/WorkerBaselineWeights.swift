import Foundation
import HNDEngine

/// How a layer worker gets its baselines' weights built: off its thread, so that a new pass of a
/// run-layer whose weights were dropped does not hold up that layer's next batches while they are
/// rebuilt; taken back between batches, or waited for by the complete snapshot that needs them.
extension LayerWorker {
    /// Starts a build of each baseline's weights the book wants and no build is making already.
    /// Free when nothing is wanted (the common case: one set's emptiness).
    func startBaselineWeightsBuilds() {
        guard !state.book.pendingBaselineWeights.isEmpty else { return }
        for job in state.book.takeBaselineWeightsJobs() where baselineWeightsBuilds[job.runLayer] == nil {
            let build = BaselineWeightsBuild(job)
            baselineWeightsBuilds[job.runLayer] = build
            context.runInBackground { build.run() }
        }
    }

    /// Gives the book the weights built since the last call; those of `waitingFor` are waited for
    /// if still building. Free when no build is under way.
    func attachBuiltBaselineWeights(waitingFor: Set<RunLayer> = []) {
        guard !baselineWeightsBuilds.isEmpty else { return }
        for (runLayer, build) in baselineWeightsBuilds {
            guard let built = waitingFor.contains(runLayer) ? build.wait() : build.result else { continue }
            baselineWeightsBuilds[runLayer] = nil
            state.book.attachBaselineWeights(built.weights, for: runLayer)
            guard let weights = built.weights else { continue }
            context.logger.info("baseline weights built", metadata: [
                "baseline": "\(runLayer)", "seconds": "\(String(format: "%.3f", built.seconds))",
                "MB": "\(String(format: "%.1f", Double(weights.bytes) / 1e6))",
                // Every worker's: the daemon keeps at most --keep-baseline-weights run-layers' worth.
                "kept_MB": "\(String(format: "%.1f", Double(state.book.baselineWeights.now.bytes) / 1e6))"])
        }
    }
}
