import Foundation
import HNDEngine

/// The snapshot file (docs/4-snapshots.md) and its writer. `S.h5` is a small index (`SnapshotIndex`): the
/// taxonomy and every dataset's type and shape, whose values HDF5 reads from raw row files in
/// `S.h5.rows/` (external storage). An append writes the new rows at the end of the row files,
/// syncs them, then replaces the index by a new one naming one more row (write, sync, rename).
/// What an append writes is its rows plus the index (its size does not grow with the rows), and a
/// `kill -9` at any moment leaves the previous index — a complete, closed HDF5 file — whose rows
/// are all in the row files: bytes past them are a torn append, never read, overwritten next time.
/// Nothing needs recovering: readers, h5py's plain `File(path, "r")` included, need no flag.
///
/// One writer at a time: the instance holds an exclusive lock on `S.h5.rows/lock` while it lives.
public final class SnapshotFile {
    public let path: String
    public let dictionary: FaceDictionary
    let rowDirectory: RowDirectory
    /// The layers in file order, with their committed rows.
    private(set) var layers: [StoredLayer] = []
    private let lock: Int32

    /// Opens or creates the file at `path` for the dictionary's taxonomy. An existing file must be
    /// a snapshot file of the same taxonomy; one written before row files is migrated to them.
    /// With `keepPartials`, every layer keeps its complete rows and only its latest `keepPartials`
    /// incomplete ones (`SnapshotRetention`).
    public init(path: String, dictionary: FaceDictionary, keepPartials: Int? = nil) throws(StoreError) {
        self.path = path
        self.dictionary = dictionary
        rowDirectory = RowDirectory(snapshotFile: path)
        try RowFiles.makeDirectory(rowDirectory.path)
        lock = try Self.lockExclusively(rowDirectory.path + "/lock", for: path)
        if FileManager.default.fileExists(atPath: path) {
            try open(keepPartials: keepPartials)
        } else {
            try SnapshotIndex.write([], taxonomy: dictionary, to: path)
        }
    }

    deinit { close(lock) }

    private static func lockExclusively(_ lockPath: String, for path: String) throws(StoreError) -> Int32 {
        let fd = Foundation.open(lockPath, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw StoreError(file: path, object: "", message: "cannot create the writer's lock \(lockPath)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StoreError(file: path, object: "", message: "another hndd process is writing this snapshot file (it holds \(lockPath))")
        }
        return fd
    }

    /// Reads the index; migrates a file of the old layout; cuts torn appends; applies retention;
    /// rewrites the index with this directory's absolute paths (the files may have been moved).
    private func open(keepPartials: Int?) throws(StoreError) {
        let file = try HDF5File.open(path)
        try checkCompatible(file)
        guard let stored = try SnapshotIndex.read(file, taxonomy: dictionary) else {
            try SnapshotRewrite.migrate(self)
            return try open(keepPartials: keepPartials)
        }
        layers = stored.map { layer in
            var layer = layer
            let moved = rowDirectory.layerDirectory(layer.name, generation: RowDirectory.generation(of: layer.directory))
            if layer.directory != moved, FileManager.default.fileExists(atPath: moved) { layer.directory = moved }
            return layer
        }
        for layer in layers {
            for dataset in layer.datasets { try RowFiles.cut(layer.rowFile(of: dataset), to: layer.rows * layer.rowBytes(of: dataset)) }
        }
        try SnapshotIndex.write(layers, taxonomy: dictionary, to: path)
        if let keepPartials { try SnapshotRewrite.retain(self, keepPartials: keepPartials) }
    }

    func checkCompatible(_ file: HDF5File) throws(StoreError) {
        let format = file.hasAttribute("format") ? try file.stringAttribute("format") : ""
        guard format == SnapshotSchema.format else {
            throw StoreError(file: path, object: "/", message: "exists and is not a hndd snapshot file (format \"\(format)\"); choose another --out")
        }
        let concepts = try file.readStrings(SnapshotSchema.concepts)
        let subgroups = try file.readStrings(SnapshotSchema.subgroups)
        guard concepts == dictionary.concepts, subgroups == dictionary.subgroups else {
            throw StoreError(file: path, object: SnapshotSchema.concepts, message: "was written for another dictionary's taxonomy; choose another --out")
        }
    }

    /// (layer, run, step) of every row written so far.
    public func writtenPasses() throws(StoreError) -> [(layer: String, run: String, step: Int64)] {
        guard layers.contains(where: { $0.rows > 0 }) else { return [] }
        let reader = try SnapshotReader(path: path)
        var result: [(layer: String, run: String, step: Int64)] = []
        for name in reader.layerNames {
            for row in try reader.layer(name).rows { result.append((name, row.run, row.step)) }
        }
        return result
    }

    /// Appends one row per snapshot: the rows of all layers first, then one new index. Every row
    /// is encoded before any is written, so a snapshot the format refuses costs no other one.
    public func append(_ snapshots: [LayerSnapshot]) throws(StoreError) {
        guard !snapshots.isEmpty else { return }
        var updated = layers, pending: [[RowWrite]] = []
        for (name, rows) in Self.grouped(snapshots) {
            let existing = updated.firstIndex { $0.name == name }
            let layer = existing.map { updated[$0] } ?? StoredLayer(rows[0], directory: rowDirectory.layerDirectory(name, generation: 1))
            pending.append(try encode(rows, for: layer))
            var grown = layer
            grown.rows += rows.count
            if let existing { updated[existing] = grown } else { updated.append(grown) }
        }
        for (layer, writes) in zip(updated.filter { l in pending.contains { $0.first?.layer == l.name } }, pending) {
            if !layers.contains(where: { $0.name == layer.name }) { try startLayer(at: layer.directory) }
            for w in writes { try RowFiles.write(w.bytes, at: w.offset, to: w.file) }
        }
        try SnapshotIndex.write(updated, taxonomy: dictionary, to: path)
        layers = updated
    }

    /// The snapshots per layer, layers in order of first appearance.
    private static func grouped(_ snapshots: [LayerSnapshot]) -> [(String, [LayerSnapshot])] {
        var order: [String] = [], rows: [String: [LayerSnapshot]] = [:]
        for s in snapshots {
            if rows[s.layer] == nil { order.append(s.layer) }
            rows[s.layer, default: []].append(s)
        }
        return order.map { ($0, rows[$0]!) }
    }

    /// A new layer's directory, emptied of what an append that never committed left there.
    private func startLayer(at directory: String) throws(StoreError) {
        try? FileManager.default.removeItem(atPath: directory)
        try RowFiles.makeDirectory(directory)
    }

    /// Bytes to write at the end of one row file.
    struct RowWrite {
        let layer: String
        let file: String
        let offset: Int
        let bytes: [UInt8]
    }

    /// The rows after the layer's committed ones, for every row file, checked against the layer.
    func encode(_ rows: [LayerSnapshot], for layer: StoredLayer) throws(StoreError) -> [RowWrite] {
        let group = SnapshotSchema.group(ofLayer: layer.name)
        for s in rows where !layer.fits(s) {
            throw StoreError(file: path, object: group,
                             message: "holds \(layer.units) units × \(layer.subgroupCount) subgroups × \(layer.conceptCount) concepts × \(layer.topImageCount) top images, the new snapshot has \(s.units) × \(s.subgroupCount) × \(s.conceptCount) × \(s.topImageCount)")
        }
        var writes: [RowWrite] = []
        for dataset in layer.datasets {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(rows.count * layer.rowBytes(of: dataset))
            for s in rows {
                do throws(SnapshotDataset.ValueError) {
                    try dataset.io.encode(s, &bytes)
                } catch {
                    throw StoreError(file: path, object: group + "/" + dataset.name, message: "step \(s.step): \(error.message)")
                }
            }
            writes.append(RowWrite(layer: layer.name, file: layer.rowFile(of: dataset),
                                   offset: layer.rows * layer.rowBytes(of: dataset), bytes: bytes))
        }
        return writes
    }

    /// Replaces the stored layers (a rewrite) and commits them.
    func commit(_ replaced: [StoredLayer]) throws(StoreError) {
        try SnapshotIndex.write(replaced, taxonomy: dictionary, to: path)
        layers = replaced
    }
}
