import CHDF5
import Foundation

/// Datasets whose raw data lives in a plain file beside the HDF5 file (HDF5 "external storage").
/// The HDF5 file then holds only the dataset's type, shape and the external file's name; its
/// first axis may grow, and the values of row r sit at byte r × (row size) of the external file.
extension HDF5File {
    /// Creates a dataset of `shape` (first axis growable) whose values are read from `external`,
    /// an absolute path: HDF5 resolves a relative name against the reader's working directory.
    public func createExternalDataset(_ name: String, type: hid_t, shape: [Int], external: String) throws(StoreError) {
        let properties = HDF5Handle(H5Pcreate(chdf5_p_dataset_create()), H5Pclose)
        guard H5Pset_external(properties.id, external, 0, chdf5_f_unlimited()) >= 0 else {
            throw error(name, "cannot use \(external) as its external storage")
        }
        let dims = shape.map { hsize_t($0) }
        var maxDims = dims
        maxDims[0] = chdf5_s_unlimited()
        let space = HDF5Handle(H5Screate_simple(Int32(dims.count), dims, maxDims), H5Sclose)
        let id = H5Dcreate2(file.id, name, type, space.id, chdf5_p_default(), properties.id, chdf5_p_default())
        guard id >= 0 else { throw error(name, "cannot create the dataset on \(external)") }
        H5Dclose(id)
    }

    /// The external file a dataset's values live in, nil when they live in the HDF5 file itself.
    public func externalFile(of name: String) throws(StoreError) -> String? {
        let dataset = try openDataset(name)
        let properties = HDF5Handle(H5Dget_create_plist(dataset.id), H5Pclose)
        guard H5Pget_external_count(properties.id) > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: 4096)
        var offset: off_t = 0
        var size: hsize_t = 0
        guard H5Pget_external(properties.id, 0, buffer.count, &buffer, &offset, &size) >= 0 else {
            throw error(name, "its external storage cannot be read")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A fixed-length UTF-8 string type of `width` bytes, padded with 0x00 (numpy's `S` strings).
    static func fixedStringType(width: Int) -> hid_t {
        let type = H5Tcopy(chdf5_c_s1())
        H5Tset_size(type, width)
        H5Tset_strpad(type, H5T_STR_NULLPAD)
        H5Tset_cset(type, H5T_CSET_UTF8)
        return type
    }
}
