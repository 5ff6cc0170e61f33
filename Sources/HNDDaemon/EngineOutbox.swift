import Foundation

/// What the layer workers leave for the engine thread, which alone touches the sockets (ZeroMQ
/// sockets are not thread-safe): snapshots to publish, and whether a checkpoint is wanted (after
/// a pass is written, so that a restart does not resume it). Drained every turn of the engine.
final class EngineOutbox: @unchecked Sendable {
    private let lock = NSLock()
    private var publications: [[[UInt8]]] = []
    private var checkpointWanted = false

    /// A snapshot's publish frames (`SnapshotPublication.encode`).
    func publish(_ frames: [[UInt8]]) {
        lock.lock(); publications.append(frames); lock.unlock()
    }

    func wantCheckpoint() {
        lock.lock(); checkpointWanted = true; lock.unlock()
    }

    /// Everything left since the last call, in the order it was left.
    func take() -> (publications: [[[UInt8]]], checkpointWanted: Bool) {
        lock.lock(); defer { lock.unlock() }
        let taken = (publications, checkpointWanted)
        publications = []
        checkpointWanted = false
        return taken
    }
}
