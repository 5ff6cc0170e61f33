import CHDF5

extension HDF5File {
    /// Reads row `row` (along the first axis) of a numeric dataset, converting to `T`.
    public func readRow<T: HDF5Element>(_ name: String, row: Int, as: T.Type = T.self) throws(StoreError) -> [T] {
        let dataset = try openDataset(name)
        let shape = Self.shape(of: dataset)
        guard !shape.isEmpty, row >= 0, row < shape[0] else {
            throw error(name, "row \(row) is outside its shape \(shape)")
        }
        let rowSize = shape.dropFirst().reduce(1, *)
        var values = [T](repeating: 0, count: rowSize)
        guard rowSize > 0 else { return values }
        let fileSpace = HDF5Handle(H5Dget_space(dataset.id), H5Sclose)
        var offset = [hsize_t](repeating: 0, count: shape.count)
        var extent = shape.map { hsize_t($0) }
        offset[0] = hsize_t(row); extent[0] = 1
        H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, offset, nil, extent, nil)
        let memSpace = HDF5Handle(H5Screate_simple(Int32(extent.count), extent, nil), H5Sclose)
        let status = values.withUnsafeMutableBytes {
            H5Dread(dataset.id, T.nativeType, memSpace.id, fileSpace.id, chdf5_p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw error(name, "row \(row) cannot be read as \(T.self)") }
        return values
    }
}
