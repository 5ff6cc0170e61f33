import ArgumentParser
import HNDDaemon
import HNDWire

/// How a client finds a running daemon, shared by `subscribe` and `status`.
struct DaemonLocation: ParsableArguments {
    @Option(name: .customLong("run-dir"), help: "The daemon's run directory.")
    var runDirectory: String = RunDirectory.defaultPath

    var runDir: RunDirectory { RunDirectory(runDirectory) }
    var endpoints: Endpoints { runDir.endpoints() }
}
