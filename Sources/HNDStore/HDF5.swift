import CHDF5
import Foundation

/// A problem with a file, located by file and object (dataset, group or attribute).
public struct StoreError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var object: String
    public var message: String
    public init(file: String, object: String, message: String) {
        self.file = file
        self.object = object
        self.message = message
    }
    public var description: String { object.isEmpty ? "\(file): \(message)" : "\(file): \(object): \(message)" }
}

/// A numeric element type HDF5 can convert to and from.
public protocol HDF5Element: Numeric, Sendable {
    static var nativeType: hid_t { get }
}
extension Float: HDF5Element { public static var nativeType: hid_t { chdf5_native_float() } }
extension Double: HDF5Element { public static var nativeType: hid_t { chdf5_native_double() } }
extension Int8: HDF5Element { public static var nativeType: hid_t { chdf5_native_int8() } }
extension UInt8: HDF5Element { public static var nativeType: hid_t { chdf5_native_uint8() } }
extension Int32: HDF5Element { public static var nativeType: hid_t { chdf5_native_int32() } }
extension Int64: HDF5Element { public static var nativeType: hid_t { chdf5_native_int64() } }

/// Owns one HDF5 identifier and closes it with the matching function.
final class HDF5Handle {
    let id: hid_t
    private let closer: (hid_t) -> herr_t
    init(_ id: hid_t, _ closer: @escaping (hid_t) -> herr_t) { self.id = id; self.closer = closer }
    deinit { _ = closer(id) }
}

/// An open HDF5 file. Not thread-safe; HDF5 itself serialises behind one global lock.
public final class HDF5File {
    public let path: String
    let file: HDF5Handle

    init(path: String, id: hid_t) {
        self.path = path
        file = HDF5Handle(id, H5Fclose)
    }

    func error(_ object: String, _ message: String) -> StoreError {
        StoreError(file: path, object: object, message: message)
    }

    public static func open(_ path: String, writable: Bool = false) throws(StoreError) -> HDF5File {
        chdf5_silence_errors()
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(file: path, object: "", message: "no such file")
        }
        guard H5Fis_hdf5(path) > 0 else { throw StoreError(file: path, object: "", message: "not an HDF5 file") }
        let id = H5Fopen(path, writable ? chdf5_f_acc_rdwr() : chdf5_f_acc_rdonly(), chdf5_p_default())
        guard id >= 0 else { throw StoreError(file: path, object: "", message: "cannot be opened\(writable ? " for writing" : "")") }
        return HDF5File(path: path, id: id)
    }

    public static func create(_ path: String) throws(StoreError) -> HDF5File {
        chdf5_silence_errors()
        let id = H5Fcreate(path, chdf5_f_acc_trunc(), chdf5_p_default(), chdf5_p_default())
        guard id >= 0 else { throw StoreError(file: path, object: "", message: "cannot be created") }
        return HDF5File(path: path, id: id)
    }

    /// Writes everything to disk.
    public func flush() { _ = H5Fflush(file.id, H5F_SCOPE_GLOBAL) }

    // MARK: Objects

    /// Whether every component of `objectPath` exists (H5Lexists checks only the last one).
    public func exists(_ objectPath: String) -> Bool {
        var prefix = ""
        for part in objectPath.split(separator: "/") {
            prefix += "/" + part
            guard H5Lexists(file.id, prefix, chdf5_p_default()) > 0 else { return false }
        }
        return true
    }

    /// Names of the members of a group.
    public func members(of group: String) throws(StoreError) -> [String] {
        guard exists(group) || group == "/" else { throw error(group, "missing group") }
        let g = H5Gopen2(file.id, group, chdf5_p_default())
        guard g >= 0 else { throw error(group, "is not a group") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        H5Gget_info(g, &info)
        var names: [String] = []
        for i in 0..<info.nlinks {
            let size = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, chdf5_p_default())
            guard size >= 0 else { continue }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, chdf5_p_default())
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    public func isGroup(_ objectPath: String) -> Bool {
        guard exists(objectPath) else { return false }
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(file.id, objectPath, &info, UInt32(H5O_INFO_BASIC), chdf5_p_default()) >= 0 else { return false }
        return info.type == H5O_TYPE_GROUP
    }

    func openDataset(_ name: String) throws(StoreError) -> HDF5Handle {
        guard exists(name) else { throw error(name, "missing dataset") }
        let id = H5Dopen2(file.id, name, chdf5_p_default())
        guard id >= 0 else { throw error(name, "is not a dataset") }
        return HDF5Handle(id, H5Dclose)
    }

    public func shape(of name: String) throws(StoreError) -> [Int] {
        let dataset = try openDataset(name)
        return Self.shape(of: dataset)
    }

    static func shape(of dataset: HDF5Handle) -> [Int] {
        let space = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
        let rank = Int(H5Sget_simple_extent_ndims(space.id))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space.id, &dims, nil)
        return dims.prefix(rank).map { Int($0) }
    }

    /// The HDF5 type class of a dataset (integer, float, string, …).
    public func typeClass(of name: String) throws(StoreError) -> H5T_class_t {
        let dataset = try openDataset(name)
        let type = HDF5Handle(H5Dget_type(dataset.id), H5Tclose)
        return H5Tget_class(type.id)
    }

    /// Size in bytes of a dataset's stored element type.
    public func elementSize(of name: String) throws(StoreError) -> Int {
        let dataset = try openDataset(name)
        let type = HDF5Handle(H5Dget_type(dataset.id), H5Tclose)
        return H5Tget_size(type.id)
    }

    // MARK: Attributes

    public func hasAttribute(_ name: String, on object: String = "/") -> Bool {
        H5Aexists_by_name(file.id, object, name, chdf5_p_default()) > 0
    }

    public func numericAttribute<T: HDF5Element>(_ name: String, on object: String = "/", as: T.Type = T.self) throws(StoreError) -> T {
        guard hasAttribute(name, on: object) else { throw error(object, "missing attribute \(name)") }
        let attribute = HDF5Handle(H5Aopen_by_name(file.id, object, name, chdf5_p_default(), chdf5_p_default()), H5Aclose)
        let type = HDF5Handle(H5Aget_type(attribute.id), H5Tclose)
        let typeClass = H5Tget_class(type.id)
        guard typeClass == H5T_INTEGER || typeClass == H5T_FLOAT else { throw error(object, "attribute \(name) is not a number") }
        var value: T = 0
        guard withUnsafeMutableBytes(of: &value, { H5Aread(attribute.id, T.nativeType, $0.baseAddress) }) >= 0 else { throw error(object, "attribute \(name) cannot be read") }
        return value
    }

    public func stringAttribute(_ name: String, on object: String = "/") throws(StoreError) -> String {
        guard hasAttribute(name, on: object) else { throw error(object, "missing attribute \(name)") }
        let attribute = HDF5Handle(H5Aopen_by_name(file.id, object, name, chdf5_p_default(), chdf5_p_default()), H5Aclose)
        let type = HDF5Handle(H5Aget_type(attribute.id), H5Tclose)
        guard H5Tget_class(type.id) == H5T_STRING else { throw error(object, "attribute \(name) is not a string") }
        if H5Tis_variable_str(type.id) > 0 {
            let memType = HDF5Handle(Self.variableStringType(), H5Tclose)
            var pointer: UnsafeMutablePointer<CChar>? = nil
            guard H5Aread(attribute.id, memType.id, &pointer) >= 0 else { throw error(object, "attribute \(name) cannot be read") }
            defer { free(pointer) }
            return pointer.map { String(cString: $0) } ?? ""
        }
        let size = H5Tget_size(type.id)
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard H5Aread(attribute.id, type.id, &bytes) >= 0 else { throw error(object, "attribute \(name) cannot be read") }
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func setAttribute<T: HDF5Element>(_ name: String, _ value: T, on object: String = "/") throws(StoreError) {
        let space = HDF5Handle(H5Screate(H5S_SCALAR), H5Sclose)
        if hasAttribute(name, on: object) { H5Adelete_by_name(file.id, object, name, chdf5_p_default()) }
        let attribute = H5Acreate_by_name(file.id, object, name, T.nativeType, space.id, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
        guard attribute >= 0 else { throw error(object, "cannot create attribute \(name)") }
        defer { H5Aclose(attribute) }
        var v = value
        guard withUnsafeBytes(of: &v, { H5Awrite(attribute, T.nativeType, $0.baseAddress) }) >= 0 else { throw error(object, "cannot write attribute \(name)") }
    }

    public func setAttribute(_ name: String, _ value: String, on object: String = "/") throws(StoreError) {
        let space = HDF5Handle(H5Screate(H5S_SCALAR), H5Sclose)
        let type = HDF5Handle(Self.variableStringType(), H5Tclose)
        if hasAttribute(name, on: object) { H5Adelete_by_name(file.id, object, name, chdf5_p_default()) }
        let attribute = H5Acreate_by_name(file.id, object, name, type.id, space.id, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
        guard attribute >= 0 else { throw error(object, "cannot create attribute \(name)") }
        defer { H5Aclose(attribute) }
        let status = value.withCString { cString -> herr_t in
            var pointer: UnsafePointer<CChar>? = cString
            return H5Awrite(attribute, type.id, &pointer)
        }
        guard status >= 0 else { throw error(object, "cannot write attribute \(name)") }
    }

    // MARK: Writing

    /// Creates a group and its missing parents.
    public func createGroup(_ name: String) throws(StoreError) {
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += "/" + part
            if exists(prefix) { continue }
            let g = H5Gcreate2(file.id, prefix, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
            guard g >= 0 else { throw error(prefix, "cannot create group") }
            H5Gclose(g)
        }
    }

    /// Creates a numeric dataset. With `growable`, the first axis is unlimited and chunked one
    /// row per chunk (compressed), so rows can be appended.
    public func createDataset<T: HDF5Element>(_ name: String, shape: [Int], values: [T], growable: Bool = false) throws(StoreError) {
        precondition(values.count == shape.reduce(1, *))
        let dataset = try makeDataset(name, type: T.nativeType, shape: shape, growable: growable)
        if !values.isEmpty {
            let status = values.withUnsafeBytes {
                H5Dwrite(dataset.id, T.nativeType, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress)
            }
            guard status >= 0 else { throw error(name, "cannot write dataset") }
        }
    }

    /// Creates a chunked numeric dataset, compressed with deflate at `level` (and shuffled, when
    /// `shuffle`), without writing it: chunks never written read as zeros. Fill it with `writeRows`.
    public func createChunkedDataset<T: HDF5Element>(_ name: String, shape: [Int], chunks: [Int], as: T.Type,
                                                     deflate level: Int, shuffle: Bool = false) throws(StoreError) {
        let properties = HDF5Handle(H5Pcreate(chdf5_p_dataset_create()), H5Pclose)
        H5Pset_chunk(properties.id, Int32(chunks.count), chunks.map { hsize_t($0) })
        if shuffle { H5Pset_shuffle(properties.id) }
        H5Pset_deflate(properties.id, UInt32(level))
        let dims = shape.map { hsize_t($0) }
        let space = HDF5Handle(H5Screate_simple(Int32(dims.count), dims, nil), H5Sclose)
        let id = H5Dcreate2(file.id, name, T.nativeType, space.id, chdf5_p_default(), properties.id, chdf5_p_default())
        guard id >= 0 else { throw error(name, "cannot create dataset") }
        H5Dclose(id)
    }

    /// Writes rows [start, start + values.count / row size) along the first axis.
    public func writeRows<T: HDF5Element>(_ name: String, start: Int, values: [T]) throws(StoreError) {
        let dataset = try openDataset(name)
        let shape = Self.shape(of: dataset)
        let rowSize = shape.dropFirst().reduce(1, *), count = values.count / max(rowSize, 1)
        guard count * rowSize == values.count, start >= 0, start + count <= shape[0] else {
            throw error(name, "\(values.count) values do not fill rows from \(start) of its shape \(shape)")
        }
        let fileSpace = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
        var offset = [hsize_t](repeating: 0, count: shape.count), extent = shape.map { hsize_t($0) }
        offset[0] = hsize_t(start); extent[0] = hsize_t(count)
        H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, offset, nil, extent, nil)
        let memSpace = HDF5Handle(H5Screate_simple(Int32(extent.count), extent, nil), H5Sclose)
        let status = values.withUnsafeBytes {
            H5Dwrite(dataset.id, T.nativeType, memSpace.id, fileSpace.id, chdf5_p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw error(name, "cannot write rows from \(start)") }
    }

    /// Creates a one-dimensional variable-length UTF-8 string dataset.
    public func createStrings(_ name: String, _ strings: [String], growable: Bool = false) throws(StoreError) {
        let type = HDF5Handle(Self.variableStringType(), H5Tclose)
        let dataset = try makeDataset(name, type: type.id, shape: [strings.count], growable: growable)
        if !strings.isEmpty { try writeStrings(strings, to: dataset, type: type, selection: nil, object: name) }
    }

    func makeDataset(_ name: String, type: hid_t, shape: [Int], growable: Bool) throws(StoreError) -> HDF5Handle {
        let dims = shape.map { hsize_t($0) }
        var maxDims = dims
        let properties = HDF5Handle(H5Pcreate(chdf5_p_dataset_create()), H5Pclose)
        if growable {
            maxDims[0] = chdf5_s_unlimited()
            for i in maxDims.indices where maxDims[i] == 0 { maxDims[i] = chdf5_s_unlimited() }
            var chunk = dims.map { max($0, 1) }
            chunk[0] = 1
            H5Pset_chunk(properties.id, Int32(chunk.count), chunk)
            if H5Tget_class(type) != H5T_STRING { H5Pset_deflate(properties.id, 1) }
        }
        let space = HDF5Handle(H5Screate_simple(Int32(dims.count), dims, maxDims), H5Sclose)
        let id = H5Dcreate2(file.id, name, type, space.id, chdf5_p_default(), properties.id, chdf5_p_default())
        guard id >= 0 else { throw error(name, "cannot create dataset") }
        return HDF5Handle(id, H5Dclose)
    }

    private func writeStrings(_ strings: [String], to dataset: HDF5Handle, type: HDF5Handle,
                              selection: (file: hid_t, memory: hid_t)?, object: String) throws(StoreError) {
        let cStrings = strings.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var pointers = cStrings.map { UnsafePointer($0) }
        let status = H5Dwrite(dataset.id, type.id, selection?.memory ?? chdf5_s_all(),
                              selection?.file ?? chdf5_s_all(), chdf5_p_default(), &pointers)
        guard status >= 0 else { throw error(object, "cannot write strings") }
    }

    /// Grows the first axis of a growable dataset by one and writes `values` as the new row.
    public func appendRow<T: HDF5Element>(_ name: String, _ values: [T]) throws(StoreError) {
        let dataset = try openDataset(name)
        let (fileSpace, memSpace) = try extendByOneRow(dataset, rowSize: values.count, object: name)
        let status = values.withUnsafeBytes {
            H5Dwrite(dataset.id, T.nativeType, memSpace.id, fileSpace.id, chdf5_p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw error(name, "cannot append a row") }
    }

    public func appendString(_ name: String, _ value: String) throws(StoreError) {
        let dataset = try openDataset(name)
        let (fileSpace, memSpace) = try extendByOneRow(dataset, rowSize: 1, object: name)
        let type = HDF5Handle(Self.variableStringType(), H5Tclose)
        try writeStrings([value], to: dataset, type: type, selection: (fileSpace.id, memSpace.id), object: name)
    }

    private func extendByOneRow(_ dataset: HDF5Handle, rowSize: Int, object: String) throws(StoreError) -> (HDF5Handle, HDF5Handle) {
        var dims = Self.shape(of: dataset).map { hsize_t($0) }
        let row = dims[0]
        let expected = dims.dropFirst().reduce(1, *)
        guard Int(expected) == rowSize else { throw error(object, "a row has \(expected) values, got \(rowSize)") }
        dims[0] += 1
        guard H5Dset_extent(dataset.id, dims) >= 0 else { throw error(object, "cannot grow (is it growable?)") }
        let fileSpace = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
        var offset = [hsize_t](repeating: 0, count: dims.count)
        offset[0] = row
        var count = dims
        count[0] = 1
        H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, offset, nil, count, nil)
        let memSpace = HDF5Handle(H5Screate_simple(Int32(count.count), count, nil), H5Sclose)
        return (fileSpace, memSpace)
    }
}
