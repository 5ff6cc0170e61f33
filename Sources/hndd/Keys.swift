import ArgumentParser
import HNDDaemon

/// `hndd keys`: the CURVE keys of a run directory (README § Security).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the CURVE keys of a daemon's TCP endpoints.",
        discussion: """
        Without a subcommand: make the daemon's key pair in RUN-DIR/keys (the secret key mode 0600) if it has none, \
        and print its public key. A running daemon rereads the authorised keys: `client` and `revoke` need no restart.
        """,
        subcommands: [Server.self, Client.self, Revoke.self, List.self], defaultSubcommand: Server.self)

    struct RunDirectoryOption: ParsableArguments {
        @Option(name: .customLong("run-dir"), help: "The daemon's run directory.")
        var runDirectory: String = RunDirectory.defaultPath
        var management: KeyManagement { KeyManagement(runDirectory: RunDirectory(runDirectory)) }
    }

    struct Server: HNDDCommand {
        static let configuration = CommandConfiguration(abstract: "Make the daemon's key pair if there is none; print its public key.")
        @OptionGroup var location: RunDirectoryOption

        func execute() async throws {
            let (keys, created) = try location.management.ensureServerKeys()
            print("\(created ? "made" : "kept") \(location.management.keys.serverSecret)")
            print("server public key \(keys.pair.publicKey.z85)")
        }
    }

    struct Client: HNDDCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make client NAME's credential (its key pair and the server's public key), authorise it, print its path.",
            discussion: "Copy the file to the trainer host: Client(endpoint=…, key=FILE), push --key FILE, hndd status --key FILE.")
        @OptionGroup var location: RunDirectoryOption
        @Option(help: "Client name (letters, digits, '.', '_', '-').") var name: String

        func execute() async throws { print(try location.management.makeClient(name)) }
    }

    struct Revoke: HNDDCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke client NAME: the running daemon refuses its key from now on (see README § Security).")
        @OptionGroup var location: RunDirectoryOption
        @Option(help: "Client name.") var name: String

        func execute() async throws {
            try location.management.revoke(name)
            print("revoked \(name): new connections with its key are refused, its open connections' messages dropped")
        }
    }

    struct List: HNDDCommand {
        static let configuration = CommandConfiguration(abstract: "List the clients with a key: authorised, then revoked.")
        @OptionGroup var location: RunDirectoryOption

        func execute() async throws {
            for client in try location.management.list() {
                print("\(client.name)\t\(client.authorized ? "authorised" : "revoked")\t\(client.key?.z85 ?? "(unreadable key file)")")
            }
        }
    }
}
