import ArgumentParser
import HNDDaemon
import HNDWire

/// How a client finds a running daemon, shared by `subscribe`, `status` and `merge`: its run
/// directory on this machine, and a credential for a daemon on TCP.
struct DaemonLocation: ParsableArguments {
    @Option(name: .customLong("run-dir"), help: "The daemon's run directory.")
    var runDirectory: String = RunDirectory.defaultPath
    @Option(help: "CURVE credential for a daemon on TCP (made by `hndd keys client`).")
    var key: String?

    var runDir: RunDirectory { RunDirectory(runDirectory) }
    var endpoints: Endpoints { runDir.endpoints() }
    func credential() throws -> ClientCredential? { try key.map(CredentialLoading.load) }
}
