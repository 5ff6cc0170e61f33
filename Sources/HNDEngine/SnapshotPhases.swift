import Dispatch
import Foundation

/// Where one snapshot's wall-clock time went, in seconds, phase by phase (`timedSnapshot`):
/// the complete snapshot is the latency a trainer waits for, and which phase dominates depends on
/// the layer's shape and its data (how many maps stay above the running bound), so every pass
/// reports it.
public struct SnapshotPhases: Sendable, Equatable {
    /// The seen image sets, the significance tests' null sets and the change test's inputs.
    public var sets = 0.0
    /// Every unit's threshold T_u, from its top values.
    public var thresholds = 0.0
    /// Stage II's exact count over the candidate maps.
    public var counts = 0.0
    /// Stages II, I and III of every unit, their tests' raw p-values and top images.
    public var units = 0.0
    /// Benjamini–Hochberg and the change test against the baseline (complete snapshots only).
    public var tests = 0.0

    public init() {}

    public var total: Double { sets + thresholds + counts + units + tests }

    /// The phases as `name=seconds` pairs for a log line, in the order they run; one spelling
    /// for the daemon's log, `hndd dissect` and the bench that reads them.
    public var fields: [(name: String, seconds: Double)] {
        [("sets_s", sets), ("thresholds_s", thresholds), ("count_s", counts), ("units_s", units), ("tests_s", tests)]
    }

    /// `fields` with their seconds as they are printed (milliseconds), in `serve`'s log and by
    /// `hndd dissect`: one format for both.
    public var printedFields: [(name: String, value: String)] {
        fields.map { ($0.name, String(format: "%.3f", $0.seconds)) }
    }

    /// Seconds since the last lap (or since it was made).
    struct Stopwatch {
        private var last = DispatchTime.now().uptimeNanoseconds

        mutating func lap() -> Double {
            let now = DispatchTime.now().uptimeNanoseconds
            defer { last = now }
            return Double(now - last) / 1e9
        }
    }
}
