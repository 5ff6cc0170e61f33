import Foundation
import ServiceLifecycle

/// The daemon as a swift-service-lifecycle `Service`. `run()` runs the engine loop on a thread
/// of its own (it blocks, so it stays off the concurrency pool) and returns when the loop ends. A
/// graceful shutdown of its `ServiceGroup` (SIGINT, SIGTERM) or a cancellation asks the daemon to
/// stop: it stops receiving, applies what its queue holds, writes due passes, checkpoints and
/// returns, and `hndd serve` exits 0.
public struct DaemonService: Service {
    let daemon: Daemon

    public init(_ daemon: Daemon) { self.daemon = daemon }

    public func run() async throws {
        let daemon = self.daemon
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await Self.runOnEngineThread(daemon)
        } onCancelOrGracefulShutdown: {
            daemon.stop()
        }
    }

    /// The stack of the engine thread: as the main thread's, which ran the loop before.
    static let engineThreadStackBytes = 8 << 20

    static func runOnEngineThread(_ daemon: Daemon) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let thread = Thread {
                do {
                    try daemon.run()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "hndd-engine"
            thread.stackSize = engineThreadStackBytes
            thread.start()
        }
    }
}
