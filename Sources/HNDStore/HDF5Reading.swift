import CHDF5
import Foundation

/// Reading datasets: whole, by rows along the first axis, strings; and what a dataset is.
extension HDF5File {
    /// Reads a whole numeric dataset, converting to `T`; checks that it is numeric.
    public func read<T: HDF5Element>(_ name: String, as: T.Type = T.self) throws(StoreError) -> (shape: [Int], values: [T]) {
        let dataset = try openDataset(name)
        let type = HDF5Handle(H5Dget_type(dataset.id), H5Tclose)
        let typeClass = H5Tget_class(type.id)
        guard typeClass == H5T_INTEGER || typeClass == H5T_FLOAT else {
            throw error(name, "expected a numeric dataset")
        }
        let shape = Self.shape(of: dataset)
        let count = shape.reduce(1, *)
        var values = [T](repeating: 0, count: count)
        if count > 0 {
            let status = values.withUnsafeMutableBytes {
                H5Dread(dataset.id, T.nativeType, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress)
            }
            guard status >= 0 else { throw error(name, "cannot be read as \(T.self)") }
        }
        return (shape, values)
    }

    /// Reads rows [start, start + count) along the first axis into `buffer` (resized as needed),
    /// converting to `T` (float16 files to Float included).
    public func readRows<T: HDF5Element>(_ name: String, start: Int, count: Int, into buffer: inout [T]) throws(StoreError) {
        let dataset = try openDataset(name)
        let shape = Self.shape(of: dataset)
        guard !shape.isEmpty, start >= 0, start + count <= shape[0] else {
            throw error(name, "rows \(start)..<\(start + count) are outside its shape \(shape)")
        }
        let rowSize = shape.dropFirst().reduce(1, *)
        if buffer.count != count * rowSize { buffer = [T](repeating: 0, count: count * rowSize) }
        guard count > 0, rowSize > 0 else { return }
        let fileSpace = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
        var offset = [hsize_t](repeating: 0, count: shape.count)
        var extent = shape.map { hsize_t($0) }
        offset[0] = hsize_t(start); extent[0] = hsize_t(count)
        H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, offset, nil, extent, nil)
        let memSpace = HDF5Handle(H5Screate_simple(Int32(extent.count), extent, nil), H5Sclose)
        let status = buffer.withUnsafeMutableBytes {
            H5Dread(dataset.id, T.nativeType, memSpace.id, fileSpace.id, chdf5_p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw error(name, "rows \(start)..<\(start + count) cannot be read as \(T.self)") }
    }

    /// Reads a one-dimensional string dataset (variable- or fixed-length).
    public func readStrings(_ name: String) throws(StoreError) -> [String] {
        let dataset = try openDataset(name)
        let fileType = HDF5Handle(H5Dget_type(dataset.id), H5Tclose)
        guard H5Tget_class(fileType.id) == H5T_STRING else { throw error(name, "expected a string dataset") }
        let shape = Self.shape(of: dataset)
        guard shape.count == 1 else { throw error(name, "expected one dimension, found shape \(shape)") }
        return try readStrings(dataset: dataset, fileType: fileType, count: shape[0], object: name)
    }

    fileprivate func readStrings(dataset: HDF5Handle, fileType: HDF5Handle, count: Int, object: String) throws(StoreError) -> [String] {
        if count == 0 { return [] }
        if H5Tis_variable_str(fileType.id) > 0 {
            let memType = HDF5Handle(Self.variableStringType(), H5Tclose)
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            guard H5Dread(dataset.id, memType.id, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &pointers) >= 0 else {
                throw error(object, "cannot be read as strings")
            }
            let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
            let space = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
            H5Dvlen_reclaim(memType.id, space.id, chdf5_p_default(), &pointers)
            return strings
        }
        let size = H5Tget_size(fileType.id)
        let memType = HDF5Handle(H5Tcopy(fileType.id), H5Tclose) // the stored bytes: same size, padding, character set
        var bytes = [CChar](repeating: 0, count: size * count)
        guard H5Dread(dataset.id, memType.id, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &bytes) >= 0 else {
            throw error(object, "cannot be read as strings")
        }
        return (0..<count).map { i in
            let slice = bytes[(i * size)..<((i + 1) * size)].prefix { $0 != 0 }
            return String(decoding: slice.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    static func variableStringType() -> hid_t {
        let type = H5Tcopy(chdf5_c_s1())
        H5Tset_size(type, chdf5_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        return type
    }

    /// The chunk shape of a chunked dataset, nil for another layout (contiguous, compact).
    public func chunkShape(of name: String) throws(StoreError) -> [Int]? {
        let dataset = try openDataset(name)
        let properties = HDF5Handle(H5Dget_create_plist(dataset.id), H5Pclose)
        guard H5Pget_layout(properties.id) == H5D_CHUNKED else { return nil }
        let rank = Self.shape(of: dataset).count
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        guard H5Pget_chunk(properties.id, Int32(rank), &dims) >= 0 else { return nil }
        return dims.prefix(rank).map { Int($0) }
    }

    /// Whether a dataset holds unsigned integers.
    public func isUnsignedInteger(_ name: String) throws(StoreError) -> Bool {
        let dataset = try openDataset(name)
        let type = HDF5Handle(H5Dget_type(dataset.id), H5Tclose)
        return H5Tget_class(type.id) == H5T_INTEGER && H5Tget_sign(type.id) == H5T_SGN_NONE
    }
}
