import CHDF5

/// An activations file (docs/2-activations.md): `/layers/<layer>/activations` [M, C, h, w] and optional
/// `/layers/<layer>/image_ids` [M]. Read in row batches so memory stays bounded.
public struct ActivationsFile {
    public let file: HDF5File
    public var path: String { file.path }

    public init(_ path: String) throws(StoreError) {
        file = try HDF5File.open(path)
        guard file.isGroup("/layers") else { throw file.error("/layers", "missing group (no layers in this activations file)") }
    }

    public func layerNames() throws(StoreError) -> [String] {
        try file.members(of: "/layers").filter { file.isGroup("/layers/\($0)") }
    }

    /// One layer's geometry and image ids, checked.
    public struct Layer {
        public let name: String
        public let dataset: String
        public let rows: Int, units: Int, height: Int, width: Int
        public let imageIDs: [Int64]
    }

    public func layer(_ name: String) throws(StoreError) -> Layer {
        let group = "/layers/\(name)"
        guard file.isGroup(group) else {
            let known = (try? layerNames())?.joined(separator: ", ") ?? ""
            throw file.error(group, "no layer named \"\(name)\" in this file (layers: \(known))")
        }
        let dataset = group + "/activations"
        let shape = try file.shape(of: dataset)
        guard shape.count == 4 else { throw file.error(dataset, "shape \(shape), expected [M, C, h, w]") }
        guard shape[1] > 0, shape[2] > 0, shape[3] > 0 else { throw file.error(dataset, "shape \(shape) has an empty dimension") }
        let typeClass = try file.typeClass(of: dataset)
        guard typeClass == H5T_FLOAT else { throw file.error(dataset, "expected float32 or float16 values") }
        let ids: [Int64]
        if file.exists(group + "/image_ids") {
            let read = try file.read(group + "/image_ids", as: Int64.self)
            guard read.shape == [shape[0]] else {
                throw file.error(group + "/image_ids", "shape \(read.shape), expected [\(shape[0])] (one id per activation row)")
            }
            ids = read.values
        } else {
            ids = (0..<Int64(shape[0])).map { $0 }
        }
        return Layer(name: name, dataset: dataset, rows: shape[0], units: shape[1], height: shape[2], width: shape[3], imageIDs: ids)
    }

    public func readRows(_ layer: Layer, start: Int, count: Int, into buffer: inout [Float]) throws(StoreError) {
        try file.readRows(layer.dataset, start: start, count: count, into: &buffer)
    }
}
