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

    public static let format = "hndd-snapshots"
    public static let version: Int32 = 1

    /// Opens or creates the file at `path` for the dictionary's taxonomy. An existing file must
    /// be a snapshot file of the same taxonomy.
    public init(path: String, dictionary: FaceDictionary) throws(StoreError) {
        self.path = path
        self.dictionary = dictionary
        if FileManager.default.fileExists(atPath: path) {
            try checkCompatible()
        } else {
            try replace(fresh: true) { file throws(StoreError) in
                try file.setAttribute("format", Self.format)
                try file.setAttribute("version", Self.version)
                try DictionaryFile.writeTaxonomy(dictionary, to: file)
                try file.createGroup("/layers")
            }
        }
    }

    func checkCompatible() throws(StoreError) {
        let file = try HDF5File.open(path)
        let format = file.hasAttribute("format") ? try file.stringAttribute("format") : ""
        guard format == Self.format else {
            throw StoreError(file: path, object: "/", message: "exists and is not a hndd snapshot file (format \"\(format)\"); choose another --out")
        }
        let concepts = try file.readStrings("/local/concepts")
        let subgroups = try file.readStrings("/global/subgroups")
        guard concepts == dictionary.concepts, subgroups == dictionary.subgroups else {
            throw StoreError(file: path, object: "/local/concepts", message: "was written for another dictionary's taxonomy; choose another --out")
        }
    }

    /// (layer, run, step) of every row written so far.
    public func writtenPasses() throws(StoreError) -> [(layer: String, run: String, step: Int64)] {
        let file = try HDF5File.open(path)
        var result: [(layer: String, run: String, step: Int64)] = []
        for layer in try file.members(of: "/layers") {
            let runs = try file.readStrings("/layers/\(layer)/run")
            let steps = try file.read("/layers/\(layer)/step", as: Int64.self).values
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

    private func appendRow(_ s: LayerSnapshot, to file: HDF5File) throws(StoreError) {
        let group = "/layers/\(s.layer)"
        let c = s.units, g = s.subgroupCount, l = s.conceptCount, k = s.topImageCount
        if !file.exists(group) {
            try file.createGroup(group)
            try file.setAttribute("units", Int64(c), on: group)
            try file.createStrings(group + "/run", [], growable: true)
            for name in ["step", "images_seen", "images_total"] {
                try file.createDataset(group + "/" + name, shape: [0], values: [Int64](), growable: true)
            }
            try file.createDataset(group + "/complete", shape: [0], values: [UInt8](), growable: true)
            try file.createDataset(group + "/time_unix", shape: [0], values: [Double](), growable: true)
            try file.createDataset(group + "/threshold", shape: [0, c], values: [Float](), growable: true)
            try file.createDataset(group + "/global_prob", shape: [0, c, g], values: [Float](), growable: true)
            try file.createDataset(group + "/global_biased", shape: [0, c, g], values: [UInt8](), growable: true)
            try file.createDataset(group + "/iou", shape: [0, c, l], values: [Float](), growable: true)
            try file.createDataset(group + "/region", shape: [0, c], values: [Int32](), growable: true)
            try file.createDataset(group + "/local_prob", shape: [0, c, l], values: [Float](), growable: true)
            try file.createDataset(group + "/local_paired", shape: [0, c, l], values: [UInt8](), growable: true)
            try file.createDataset(group + "/netdissect_concept", shape: [0, c], values: [Int32](), growable: true)
            try file.createDataset(group + "/top_images", shape: [0, c, k], values: [Int64](), growable: true)
        } else {
            let units: Int64 = try file.numericAttribute("units", on: group)
            guard units == Int64(c) else {
                throw file.error(group, "holds \(units) units, the new snapshot has \(c)")
            }
        }
        try file.appendString(group + "/run", s.run)
        try file.appendRow(group + "/step", [s.step])
        try file.appendRow(group + "/images_seen", [Int64(s.imagesSeen)])
        try file.appendRow(group + "/images_total", [Int64(s.imagesTotal)])
        try file.appendRow(group + "/complete", [UInt8(s.complete ? 1 : 0)])
        try file.appendRow(group + "/time_unix", [s.timeUnix])
        try file.appendRow(group + "/threshold", s.threshold)
        try file.appendRow(group + "/global_prob", s.globalProb)
        try file.appendRow(group + "/global_biased", s.globalBiased)
        try file.appendRow(group + "/iou", s.iou)
        try file.appendRow(group + "/region", s.region)
        try file.appendRow(group + "/local_prob", s.localProb)
        try file.appendRow(group + "/local_paired", s.localPaired)
        try file.appendRow(group + "/netdissect_concept", s.netdissectConcept)
        try file.appendRow(group + "/top_images", s.topImages)
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
