import ArgumentParser
import Foundation
import HNDDaemon
import HNDWire
import Logging
import ServiceLifecycle

/// The daemon (docs/5-command-line.md): dissects probe passes pushed by trainers, publishes snapshots.
struct Serve: HNDDCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon: ingest activation batches, publish running snapshots, append finished passes.",
        discussion: "SIGINT or SIGTERM: stop receiving, apply the batches already received, write what is owed, checkpoint, exit 0.")

    typealias Defaults = DaemonConfiguration.Defaults

    @Option(help: "Face Dictionary file (docs/1-dictionary.md).") var dictionary: String
    @Option(name: .customLong("run-dir"), help: "Run directory: sockets, checkpoint, lock (created mode 0700).")
    var runDirectory: String = RunDirectory.defaultPath
    @Option(help: "Snapshot file (default: RUN-DIR/snapshots.h5).") var out: String?
    @Option(help: "Ingest endpoint: ipc://PATH, tcp (127.0.0.1, any port), tcp://:PORT or tcp://HOST:PORT.") var ingest: String?
    @Option(help: "Publish endpoint (same forms as --ingest).") var publish: String?
    @Option(help: "Control endpoint (same forms as --ingest).") var control: String?
    @Option(name: .customLong("snapshot-interval"), help: "Seconds between partial snapshots of an open pass.")
    var snapshotInterval: Double = Defaults.snapshotInterval
    @Option(name: .customLong("checkpoint-interval"), help: "Seconds between checkpoints of open passes.")
    var checkpointInterval: Double = Defaults.checkpointInterval
    @Option(name: .customLong("pass-timeout"), help: "Seconds without a batch after which a pass is written incomplete.")
    var passTimeout: Double = Defaults.passTimeout
    @Option(name: .customLong("max-message-mb"), help: "Largest ingest message accepted (ZMQ_MAXMSGSIZE), in MiB.")
    var maxMessageMB: Double = Defaults.maxMessageMB
    @Option(name: .customLong("queue-mb"), help: "Received batches held for the engine, in MiB; beyond it trainers are pushed back.")
    var queueMB: Double = Defaults.queueBudgetMB
    @Flag(name: .customLong("insecure-tcp"),
          help: "Serve TCP endpoints without CURVE (no encryption, no authentication); warned at every start.")
    var insecureTCP = false
    @Option(help: "Hold image share K/N of a layer split by image over N daemons (ids with id mod N = K − 1); finished passes are kept for `hndd merge` instead of written.")
    var shard: String?
    @Option(name: .customLong("keep-shard-passes"), help: "With --shard: finished passes kept per layer.")
    var keepShardPasses: Int = Defaults.keptShardPasses
    @Option(name: .customLong("keep-partials"), help: "Retention, applied at start: each layer keeps every complete row and only its latest N incomplete ones.")
    var keepPartials: Int?
    @Option(name: .customLong("keep-baseline-weights"),
            help: "Run-layers whose baseline weights (the change test's, C × labelled images doubles each) stay built, in the whole daemon (its layer workers share them); past it the least recently used one without an open pass loses them, rebuilt in the background when its next pass opens.")
    var keepBaselineWeights: Int = Defaults.keptBaselineWeights
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        if let shard { do { _ = try ImageShard(parsing: shard) } catch { throw ValidationError("--shard: \(error)") } }
        guard keepShardPasses > 0 else { throw ValidationError("--keep-shard-passes must be at least 1") }
        guard keepBaselineWeights > 0 else {
            throw ValidationError("--keep-baseline-weights must be at least 1, got \(keepBaselineWeights)")
        }
        if let keepPartials, keepPartials < 0 { throw ValidationError("--keep-partials must be 0 or more, got \(keepPartials)") }
        for (name, value) in [("--snapshot-interval", snapshotInterval), ("--checkpoint-interval", checkpointInterval),
                              ("--pass-timeout", passTimeout), ("--max-message-mb", maxMessageMB), ("--queue-mb", queueMB)]
        where !(value > 0) {
            throw ValidationError("\(name) must be a positive number of \(name.hasSuffix("mb") ? "MiB" : "seconds")")
        }
    }

    var daemonConfiguration: DaemonConfiguration {
        var configuration = DaemonConfiguration(dictionaryPath: dictionary, runDirectory: RunDirectory(runDirectory), snapshotPath: out)
        configuration.ingest = ingest
        configuration.publish = publish
        configuration.control = control
        configuration.snapshotInterval = snapshotInterval
        configuration.checkpointInterval = checkpointInterval
        configuration.passTimeout = passTimeout
        configuration.maxMessageMB = maxMessageMB
        configuration.queueBudgetMB = queueMB
        configuration.options = engine.dissection
        configuration.insecureTCP = insecureTCP
        configuration.shard = shard.flatMap { try? ImageShard(parsing: $0) }
        configuration.keptShardPasses = keepShardPasses
        configuration.keepPartials = keepPartials
        configuration.keptBaselineWeights = keepBaselineWeights
        return configuration
    }

    func execute() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "hndd")
        logger.logLevel = ProcessInfo.processInfo.environment["HNDD_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        ZMQContext.keepLargeMessagesInTheHeap()
        let daemon = try Daemon(daemonConfiguration, logger: logger)
        let service = ServiceGroupConfiguration.ServiceConfiguration(
            service: DaemonService(daemon), successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "hndd-daemon")
        var group = ServiceGroupConfiguration(services: [service], logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: group).run()
    }
}
