import Foundation
import HNDEngine

/// One layer of a snapshot file as the writer keeps it: its dimensions, its committed rows and
/// the directory of its row files (one raw file per dataset of the schema, row r of a dataset at
/// byte r × `rowBytes` of its file).
struct StoredLayer: Sendable {
    var name: String
    var units: Int
    var subgroupCount: Int
    var conceptCount: Int
    /// k of `top_images`; 0 when the layer has no such dataset (files written before it existed).
    var topImageCount: Int
    /// Rows committed: named by the index file. Bytes past them in a row file are a torn append.
    var rows: Int
    /// Absolute path of the layer's row files.
    var directory: String

    init(name: String, units: Int, subgroupCount: Int, conceptCount: Int, topImageCount: Int, rows: Int, directory: String) {
        self.name = name
        self.units = units
        self.subgroupCount = subgroupCount
        self.conceptCount = conceptCount
        self.topImageCount = topImageCount
        self.rows = rows
        self.directory = directory
    }

    init(_ s: LayerSnapshot, directory: String) {
        self.init(name: s.layer, units: s.units, subgroupCount: s.subgroupCount, conceptCount: s.conceptCount,
                  topImageCount: s.topImageCount, rows: 0, directory: directory)
    }

    /// The schema's datasets this layer stores (an optional dataset of zero extent is left out).
    var datasets: [SnapshotDataset] {
        SnapshotSchema.datasets.filter { !($0.optional && dims(of: $0).contains(0)) }
    }

    /// The dataset's dimensions after the row axis.
    func dims(of dataset: SnapshotDataset) -> [Int] {
        dataset.axes.map { axis in
            switch axis {
            case .units: units
            case .subgroups: subgroupCount
            case .concepts: conceptCount
            case .topImages: topImageCount
            }
        }
    }

    func rowBytes(of dataset: SnapshotDataset) -> Int { dims(of: dataset).reduce(dataset.io.elementSize, *) }

    func rowFile(of dataset: SnapshotDataset) -> String { directory + "/" + dataset.name + ".raw" }

    /// Whether a snapshot can be a row of this layer.
    func fits(_ s: LayerSnapshot) -> Bool {
        s.units == units && s.subgroupCount == subgroupCount && s.conceptCount == conceptCount && s.topImageCount == topImageCount
    }
}

/// Where a snapshot file's row files live: the directory `<file>.rows` beside it, one
/// subdirectory per layer and generation (a rewrite — retention, migration — makes a new one).
struct RowDirectory: Sendable {
    /// Absolute, so that the external-storage names in the index resolve from any working directory.
    let path: String

    init(snapshotFile: String) {
        let absolute = URL(fileURLWithPath: snapshotFile).standardizedFileURL
        let directory = absolute.deletingLastPathComponent().resolvingSymlinksInPath().path
        path = directory + "/" + absolute.lastPathComponent + ".rows"
    }

    /// A fresh directory name for a layer: the name with anything but letters, digits, `.`, `_`
    /// and `-` percent-encoded (and a leading dot), then the generation.
    func layerDirectory(_ layer: String, generation: Int) -> String {
        var escaped = ""
        for (i, byte) in layer.utf8.enumerated() {
            let c = Character(Unicode.Scalar(byte))
            let plain = (c.isASCII && (c.isLetter || c.isNumber)) || c == "_" || c == "-" || (c == "." && i > 0)
            escaped += plain ? String(c) : String(format: "%%%02X", byte)
        }
        return path + "/" + escaped + ".g\(generation)"
    }

    /// The generation of a layer directory made by `layerDirectory`, 0 when it is not one.
    static func generation(of directory: String) -> Int {
        guard let dot = directory.range(of: ".g", options: .backwards) else { return 0 }
        return Int(directory[dot.upperBound...]) ?? 0
    }
}
