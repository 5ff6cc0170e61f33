import CHDF5
import Foundation
import HNDEngine

/// The index file, the `S.h5` users open: the format attributes, the dictionary's taxonomy and,
/// per layer, every dataset of the schema with its shape, its first axis the committed rows, its
/// values in the layer's row files (HDF5 external storage). It is small — it holds no values —
/// and is replaced as a whole on every append (write a temporary, sync, rename), so a reader
/// always opens a complete, closed HDF5 file, and the rename is the commit of the new rows.
enum SnapshotIndex {
    /// Writes the index of `layers` to `path`, atomically.
    static func write(_ layers: [StoredLayer], taxonomy: FaceDictionary, to path: String) throws(StoreError) {
        let temporary = path + ".writing-\(getpid())"
        unlink(temporary)
        do {
            let file = try HDF5File.create(temporary)
            try file.setAttribute("format", SnapshotSchema.format)
            try file.setAttribute("version", SnapshotSchema.version)
            try DictionaryFile.writeTaxonomy(taxonomy, to: file)
            try file.createGroup(SnapshotSchema.layersGroup)
            for layer in layers { try write(layer, to: file) }
        } catch {
            unlink(temporary)
            throw error
        }
        guard RowFiles.sync(temporary), rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw StoreError(file: path, object: "", message: "cannot replace the index file: \(reason)")
        }
        RowFiles.sync((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
    }

    private static func write(_ layer: StoredLayer, to file: HDF5File) throws(StoreError) {
        let group = SnapshotSchema.group(ofLayer: layer.name)
        try file.createGroup(group)
        try file.setAttribute(SnapshotSchema.unitsAttribute, Int64(layer.units), on: group)
        for dataset in layer.datasets {
            let type = dataset.io.fileType()
            defer { H5Tclose(type) }
            try file.createExternalDataset(group + "/" + dataset.name, type: type, shape: [layer.rows] + layer.dims(of: dataset),
                                           external: layer.rowFile(of: dataset))
        }
    }

    /// The layers an index file names, nil when a dataset keeps its values inside the file (a
    /// snapshot file written before row files, to be migrated).
    static func read(_ file: HDF5File, taxonomy: FaceDictionary) throws(StoreError) -> [StoredLayer]? {
        var layers: [StoredLayer] = []
        for name in try file.members(of: SnapshotSchema.layersGroup) where file.isGroup(SnapshotSchema.group(ofLayer: name)) {
            let group = SnapshotSchema.group(ofLayer: name)
            guard let external = try file.externalFile(of: group + "/step") else { return nil }
            let top = group + "/top_images"
            let units: Int64 = try file.numericAttribute(SnapshotSchema.unitsAttribute, on: group)
            layers.append(StoredLayer(name: name, units: Int(units), subgroupCount: taxonomy.subgroups.count,
                                      conceptCount: taxonomy.concepts.count,
                                      topImageCount: file.exists(top) ? try file.shape(of: top).last ?? 0 : 0,
                                      rows: try file.shape(of: group + "/step").first ?? 0,
                                      directory: (external as NSString).deletingLastPathComponent))
        }
        return layers
    }
}
