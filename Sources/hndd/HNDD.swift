import ArgumentParser
import Foundation

@main
struct HNDD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hndd",
        abstract: "Live Hierarchical Network Dissection of face models.",
        discussion: "See README.md. File formats and numbers: docs/.",
        subcommands: [Dissect.self, Serve.self, Subscribe.self, Status.self, Summary.self, Report.self, DictionaryCommand.self,
                      Keys.self, Merge.self, BenchAppend.self, BenchStages.self]
    )
}

/// A command of hndd: `execute` does the work, and its failures reach the user through
/// `reportingErrors`, the one path for them.
protocol HNDDCommand: AsyncParsableCommand {
    func execute() async throws
}

extension HNDDCommand {
    func run() async throws { try await reportingErrors { try await execute() } }
}

/// A failure the user can act on: printed as one line on stderr, exit status 1.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning any error into one line on stderr and a non-zero exit.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("hndd: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
