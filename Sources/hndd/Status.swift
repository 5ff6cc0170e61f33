import ArgumentParser
import Foundation
import HNDDaemon
import HNDWire
import SwiftProtobuf

/// `hndd status`: the daemon's state as JSON on stdout.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's status as JSON: layers, passes, images seen, rejected batches, queue depth, uptime.")
    @OptionGroup var location: DaemonLocation
    @Option(help: "Seconds to wait for the daemon.") var timeout: Double = 5

    func run() throws {
        do {
            var request = Hndd_ControlRequest()
            request.status = Hndd_StatusRequest()
            let reply = try ControlClient(endpoint: location.endpoints.control).request(request, timeout: timeout)
            var options = JSONEncodingOptions()
            options.preserveProtoFieldNames = true
            options.alwaysPrintEnumsAsInts = false
            print(try reply.status.jsonString(options: options))
        } catch {
            FileHandle.standardError.write(Data("hndd: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
