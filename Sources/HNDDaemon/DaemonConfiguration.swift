import HNDEngine

/// Settings of `hndd serve` (docs/5-command-line.md). The command line takes its defaults from `Defaults`.
public struct DaemonConfiguration: Sendable {
    public enum Defaults {
        /// Seconds between partial snapshots of an open pass (`SnapshotSchedule` spaces them further).
        public static let snapshotInterval = 1.0
        /// Seconds between checkpoints of the open passes.
        public static let checkpointInterval = 30.0
        /// Seconds without a batch after which a pass is written incomplete.
        public static let passTimeout = 600.0
        /// Largest ingest message accepted (ZMQ_MAXMSGSIZE), MiB.
        public static let maxMessageMB = 512.0
        /// Received batches held for the engine, MiB. Small on purpose: trainers queue on their
        /// side (the client), and every batch waiting here delays the complete snapshot — 64 MiB
        /// is two to three paper-scale batches.
        public static let queueBudgetMB = 64.0
        /// Finished passes an image-shard daemon keeps per layer for `hndd merge` (on disk).
        public static let keptShardPasses = 4
        /// Run-layers whose baseline's change-test weights stay built (`BaselineWeightsCache`):
        /// ≈ 45 MB each at 512 units, ≈ 180 MB at 2,048 (docs/performance.md).
        public static let keptBaselineWeights = 6
    }

    public var dictionaryPath: String
    public var runDirectory: RunDirectory
    public var snapshotPath: String
    public var ingest: String?
    public var publish: String?
    public var control: String?
    public var snapshotInterval = Defaults.snapshotInterval
    public var checkpointInterval = Defaults.checkpointInterval
    public var passTimeout = Defaults.passTimeout
    public var maxMessageMB = Defaults.maxMessageMB
    /// Past this many bytes of waiting batches the daemon stops reading, and ZeroMQ's high-water
    /// marks push back on the trainers.
    public var queueBudgetMB = Defaults.queueBudgetMB
    public var options = DissectionOptions()
    /// Serve TCP endpoints without CURVE (plaintext), warning at every start.
    public var insecureTCP = false
    /// The share of the images this daemon holds, when a layer is split by image over several.
    public var shard: ImageShard?
    public var keptShardPasses = Defaults.keptShardPasses
    public var keptBaselineWeights = Defaults.keptBaselineWeights
    /// Retention: at start, each layer keeps its complete rows and only this many incomplete ones.
    public var keepPartials: Int?

    public init(dictionaryPath: String, runDirectory: RunDirectory, snapshotPath: String? = nil) {
        self.dictionaryPath = dictionaryPath
        self.runDirectory = runDirectory
        self.snapshotPath = snapshotPath ?? runDirectory.defaultSnapshotFile
    }

    /// `maxMessageMB` in bytes: the ingest socket's ZMQ_MAXMSGSIZE; half of it bounds the values
    /// a batch header may claim (float16 values are 2 bytes).
    var maxMessageBytes: Int64 { Int64(maxMessageMB * 1_048_576) }

    /// A pass is also written incomplete once a newer step of its run and layer has been
    /// receiving for this long: the trainer has moved on.
    var supersededAfter: Double { min(passTimeout, max(10, 5 * snapshotInterval)) }
}
