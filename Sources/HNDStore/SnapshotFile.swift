import Foundation
import HNDEngine

/// The snapshot file (SPEC §4), appended to atomically: each append writes a copy of the file
/// with the new rows, flushes it to disk and renames it over the original. A reader — h5py,
/// HDFView, `hndd report` — always opens a complete, closed HDF5 file, even while the daemon
/// runs, and a `kill -9` at any moment leaves either the file before or the file after the
/// append, never a torn one. Rows are compressed, so the copy stays small.
public struct SnapshotFile {
    public let path: String
    public let dictionary: FaceDictionary

    /// Opens or creates the file at `path` for the dictionary's taxonomy. An existing file must
    /// be a snapshot file of the same taxonomy.
    public init(path: String, dictionary: FaceDictionary) throws(StoreError) {
        self.path = path
        self.dictionary = dictionary
        if FileManager.default.fileExists(atPath: path) {
            try checkCompatible()
        } else {
            try replace(fresh: true) { file throws(StoreError) in
                try file.setAttribute("format", SnapshotSchema.format)
                try file.setAttribute("version", SnapshotSchema.version)
                try DictionaryFile.writeTaxonomy(dictionary, to: file)
                try file.createGroup(SnapshotSchema.layersGroup)
            }
        }
    }

    func checkCompatible() throws(StoreError) {
        let file = try HDF5File.open(path)
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
        let file = try HDF5File.open(path)
        var result: [(layer: String, run: String, step: Int64)] = []
        for layer in try file.members(of: SnapshotSchema.layersGroup) {
            let group = SnapshotSchema.group(ofLayer: layer)
            let runs = try file.readStrings(group + "/run")
            let steps = try file.read(group + "/step", as: Int64.self).values
            for (run, step) in zip(runs, steps) { result.append((layer, run, step)) }
        }
        return result
    }

    /// Appends one row per snapshot (several layers at once share one atomic replacement).
    public func append(_ snapshots: [LayerSnapshot]) throws(StoreError) {
        guard !snapshots.isEmpty else { return }
        try replace(fresh: false) { file throws(StoreError) in
            for snapshot in snapshots { try appendRow(snapshot, to: file) }
        }
    }

    /// One row in every dataset of the schema; the layer's group is made on its first row.
    private func appendRow(_ s: LayerSnapshot, to file: HDF5File) throws(StoreError) {
        let group = SnapshotSchema.group(ofLayer: s.layer)
        if !file.exists(group) {
            try file.createGroup(group)
            try file.setAttribute(SnapshotSchema.unitsAttribute, Int64(s.units), on: group)
            for dataset in SnapshotSchema.datasets {
                try dataset.io.create(file, group + "/" + dataset.name, dataset.axes.map { Self.extent($0, of: s) })
            }
        } else {
            let units: Int64 = try file.numericAttribute(SnapshotSchema.unitsAttribute, on: group)
            guard units == Int64(s.units) else {
                throw file.error(group, "holds \(units) units, the new snapshot has \(s.units)")
            }
        }
        for dataset in SnapshotSchema.datasets { try dataset.io.append(file, group + "/" + dataset.name, s) }
    }

    static func extent(_ axis: SnapshotAxis, of s: LayerSnapshot) -> Int {
        switch axis {
        case .units: s.units
        case .subgroups: s.subgroupCount
        case .concepts: s.conceptCount
        case .topImages: s.topImageCount
        }
    }

    /// Copy, change, sync, rename: the file at `path` is replaced as a whole or not at all.
    private func replace(fresh: Bool, _ change: (HDF5File) throws(StoreError) -> Void) throws(StoreError) {
        let temporary = path + ".writing-\(getpid())"
        let manager = FileManager.default
        try? manager.removeItem(atPath: temporary)
        do {
            if !fresh { try manager.copyItem(atPath: path, toPath: temporary) }
        } catch {
            throw StoreError(file: path, object: "", message: "cannot copy for an atomic append: \(error.localizedDescription)")
        }
        do {
            try Self.apply(change, to: temporary, fresh: fresh)
        } catch {
            try? manager.removeItem(atPath: temporary)
            throw error
        }
        guard Self.syncFile(temporary), rename(temporary, path) == 0 else {
            try? manager.removeItem(atPath: temporary)
            throw StoreError(file: path, object: "", message: "cannot replace the file: \(String(cString: strerror(errno)))")
        }
        Self.syncFile((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
    }

    /// Opens, changes and closes (so flushes) the file: the handle must be gone before the rename.
    private static func apply(_ change: (HDF5File) throws(StoreError) -> Void, to path: String, fresh: Bool) throws(StoreError) {
        let file = fresh ? try HDF5File.create(path) : try HDF5File.open(path, writable: true)
        try change(file)
    }

    @discardableResult
    static func syncFile(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }
}
