import Foundation
import HNDEngine

/// The two rewrites of a snapshot file, both made at open (never per append): a file of the old
/// layout (values inside the HDF5 file) moved to row files, and retention. Each copies the rows
/// it keeps into a new generation of the layer's row directory and commits by replacing the
/// index, so a crash during a rewrite leaves the file as it was.
enum SnapshotRewrite {
    /// Rows copied at a time.
    static let batch = 32

    /// Moves every row of a file written before row files to row files; its index replaces it.
    static func migrate(_ target: SnapshotFile) throws(StoreError) {
        let reader: SnapshotReader
        do {
            reader = try SnapshotReader(path: target.path)
        } catch {
            return try target.commit([]) // a file without rows: nothing to move
        }
        var layers: [StoredLayer] = []
        for name in reader.layerNames {
            let rows = try reader.layer(name)
            layers.append(try copy(rows, keeping: rows.rows.map(\.index), from: reader, into: target, generation: 1))
        }
        try target.commit(layers)
    }

    /// Keeps every complete row of each layer and only its latest `keepPartials` incomplete ones.
    /// A layer with no more than that is left untouched.
    static func retain(_ target: SnapshotFile, keepPartials: Int) throws(StoreError) {
        guard target.layers.contains(where: { $0.rows > 0 }) else { return }
        let reader = try SnapshotReader(path: target.path)
        var layers = target.layers, replaced: [String] = []
        for (i, layer) in layers.enumerated() where layer.rows > 0 {
            let rows = try reader.layer(layer.name).rows
            let partials = rows.filter { !$0.complete }.map(\.index)
            guard partials.count > keepPartials else { continue }
            let dropped = Set(partials.dropLast(keepPartials))
            let kept = rows.map(\.index).filter { !dropped.contains($0) }
            layers[i] = try copy(reader.layer(layer.name), keeping: kept, from: reader, into: target,
                                 generation: RowDirectory.generation(of: layer.directory) + 1)
            replaced.append(layer.directory)
        }
        guard !replaced.isEmpty else { return }
        try target.commit(layers)
        for directory in replaced { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// The rows `kept` of a layer, written to a fresh row directory of `generation`.
    private static func copy(_ rows: LayerRows, keeping kept: [Int], from reader: SnapshotReader, into target: SnapshotFile,
                             generation: Int) throws(StoreError) -> StoredLayer {
        var layer = StoredLayer(name: rows.name, units: rows.units, subgroupCount: reader.taxonomy.subgroups.count,
                                conceptCount: reader.taxonomy.concepts.count, topImageCount: rows.topImageCount, rows: 0,
                                directory: target.rowDirectory.layerDirectory(rows.name, generation: generation))
        try? FileManager.default.removeItem(atPath: layer.directory)
        try RowFiles.makeDirectory(layer.directory)
        var start = 0
        while start < kept.count {
            var snapshots: [LayerSnapshot] = []
            for index in kept[start..<min(start + batch, kept.count)] {
                snapshots.append(try reader.snapshot(rows, row: index, detail: .everything))
            }
            for w in try target.encode(snapshots, for: layer) { try RowFiles.write(w.bytes, at: w.offset, to: w.file) }
            layer.rows += snapshots.count
            start += batch
        }
        return layer
    }
}
