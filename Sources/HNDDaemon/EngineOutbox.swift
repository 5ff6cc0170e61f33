import Foundation

/// What the layer workers leave for the engine thread, which alone touches the sockets (ZeroMQ
/// sockets are not thread-safe) and the router: snapshots to publish, whether a checkpoint is
/// wanted (after a pass is written, so that a restart does not resume it), layers to forget.
/// Drained every turn of the engine.
final class EngineOutbox: @unchecked Sendable {
    /// Everything left since the last `take`, in the order it was left.
    struct Contents {
        var publications: [[[UInt8]]] = []
        var checkpointWanted = false
        /// Layers whose worker refused the batch of that number and holds nothing of them.
        var forgettable: [(layer: String, refusedBatch: UInt64)] = []
    }

    private let lock = NSLock()
    private var contents = Contents()

    /// A snapshot's publish frames (`SnapshotPublication.encode`).
    func publish(_ frames: [[UInt8]]) {
        lock.lock(); contents.publications.append(frames); lock.unlock()
    }

    func wantCheckpoint() {
        lock.lock(); contents.checkpointWanted = true; lock.unlock()
    }

    func forget(_ layer: String, refusedBatch number: UInt64) {
        lock.lock(); contents.forgettable.append((layer, number)); lock.unlock()
    }

    func take() -> Contents {
        lock.lock(); defer { lock.unlock() }
        let taken = contents
        contents = Contents()
        return taken
    }
}
