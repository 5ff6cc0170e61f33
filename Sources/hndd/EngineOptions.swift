import ArgumentParser
import HNDEngine

/// The dissection's numbers, shared by `dissect` and `serve` (docs/3-numbers.md); defaults from the engine.
struct EngineOptions: ParsableArguments {
    @Option(help: "Upper-tail share q of the activation threshold: T is the (1 − q) quantile.")
    var quantile: Double = DissectionOptions().quantile

    @Option(name: .customLong("iou-floor"), help: "Smallest IoU that localises a unit.")
    var iouFloor: Double = DissectionOptions().iouFloor

    func validate() throws {
        guard quantile > 0, quantile < 1 else { throw ValidationError("--quantile must be in (0, 1), got \(quantile)") }
        guard iouFloor >= 0, iouFloor <= 1 else { throw ValidationError("--iou-floor must be in [0, 1], got \(iouFloor)") }
    }

    var dissection: DissectionOptions { DissectionOptions(quantile: quantile, iouFloor: iouFloor) }
}
