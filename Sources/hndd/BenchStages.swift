import ArgumentParser
import Foundation
import HNDEngine
import HNDStore

/// `hndd bench-stages` (hidden): Stage I's and Stage III's scores as the engine computes them
/// against weights matrices and one BLAS product per category or region, on synthetic maxima
/// over a dictionary's images (docs/performance.md, "Why not BLAS for Stage I/III").
struct BenchStages: HNDDCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-stages", abstract: "Time Stage I/III score loops against BLAS products (benchmark).",
        shouldDisplay: false)

    @Option(help: "Face Dictionary whose image sets to use.") var dictionary: String
    @Option(help: "Units of the synthetic layer.") var units: Int = 2048
    @Option(help: "Seed of the synthetic maxima.") var seed: UInt64 = 7
    @Option(help: "Runs of each step (the best is kept).") var repeats: Int = 3

    func execute() async throws {
        let index = DictionaryIndex(try DictionaryFile.load(dictionary))
        let report = StageScoreBenchmark.run(index: index, units: units, seed: seed, repeats: repeats)
        print("bench-stages: \(units) units x \(index.imageCount) images, kernels \(EngineKernels.path), best of \(repeats)")
        for t in report.timings { print(String(format: "  %-52@ %8.4f s", t.name as NSString, t.seconds)) }
        for a in report.agreements {
            let snapshot = a.probabilitiesDiffering.map { ", \($0) snapshot values differ" } ?? ""
            print("  \(a.name): \(a.identical) of \(a.entries) sums bit-identical, max relative difference "
                  + String(format: "%.3g", a.maxRelative) + snapshot)
        }
    }
}
