import Foundation
import HNDEngine
import HNDStore

/// The snapshot file shared by the layer workers: HDF5 is thread-safe only behind one lock, and
/// each append rewrites the file's index, so one worker appends at a time.
final class SharedSnapshotFile: @unchecked Sendable {
    private let lock = NSLock()
    private let file: SnapshotFile

    init(_ file: SnapshotFile) { self.file = file }

    func append(_ rows: [LayerSnapshot]) throws(StoreError) {
        lock.lock(); defer { lock.unlock() }
        try file.append(rows)
    }

    func writtenPasses() throws(StoreError) -> [(layer: String, run: String, step: Int64)] {
        lock.lock(); defer { lock.unlock() }
        return try file.writtenPasses()
    }
}
