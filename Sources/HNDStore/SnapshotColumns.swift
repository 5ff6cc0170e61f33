import CHDF5
import HNDEngine

/// The bookkeeping of one snapshot row: which pass it belongs to and whether it is complete.
public struct SnapshotRow: Sendable, Equatable {
    public var index: Int
    public var run = ""
    public var step: Int64 = 0
    public var imagesSeen: Int64 = 0
    public var imagesTotal: Int64 = 0
    public var complete = false
    public var timeUnix: Double = 0

    public init(index: Int) { self.index = index }
}

/// A numeric type the snapshot file stores.
public protocol SnapshotNumber: HDF5Element {
    static var snapshotElement: SnapshotElement { get }
}
extension Int64: SnapshotNumber { public static var snapshotElement: SnapshotElement { .int64 } }
extension Int32: SnapshotNumber { public static var snapshotElement: SnapshotElement { .int32 } }
extension UInt8: SnapshotNumber { public static var snapshotElement: SnapshotElement { .uint8 } }
extension Float: SnapshotNumber { public static var snapshotElement: SnapshotElement { .float32 } }
extension Double: SnapshotNumber { public static var snapshotElement: SnapshotElement { .float64 } }

/// How one dataset's values move between a `LayerSnapshot` (or a `SnapshotRow`) and the file.
/// A row is written as its raw bytes (the stored type is the native one, so memory and file
/// agree) to the dataset's row file; HDF5 reads it back through the dataset.
struct SnapshotColumnIO: Sendable {
    /// The stored element type (the caller closes it) and its size in bytes.
    let fileType: @Sendable () -> hid_t
    let elementSize: Int
    /// Appends the snapshot's row, as stored, to the bytes.
    let encode: @Sendable (LayerSnapshot, inout [UInt8]) throws(SnapshotDataset.ValueError) -> Void
    /// Bookkeeping datasets: reads the whole column into the rows (one per row, checked).
    var readColumn: (@Sendable (HDF5File, String, inout [SnapshotRow]) throws(StoreError) -> Void)?
    /// Per-unit datasets: reads row `row` into the snapshot.
    var readRow: (@Sendable (HDF5File, String, Int, SnapshotTaxonomy, inout LayerSnapshot) throws(StoreError) -> Void)?

    static func numbers<T: SnapshotNumber>(_ type: T.Type, _ values: @escaping @Sendable (LayerSnapshot) -> [T]) -> SnapshotColumnIO {
        SnapshotColumnIO(fileType: { H5Tcopy(T.nativeType) }, elementSize: MemoryLayout<T>.size,
                         encode: { s, bytes in values(s).withUnsafeBytes { bytes.append(contentsOf: $0) } })
    }
}

extension SnapshotDataset {
    /// A bookkeeping string, one per row.
    static func strings(_ name: String, _ meaning: String, _ value: KeyPath<LayerSnapshot, String> & Sendable,
                        into field: WritableKeyPath<SnapshotRow, String> & Sendable) -> SnapshotDataset {
        let width = SnapshotSchema.runBytes
        var io = SnapshotColumnIO(
            fileType: { HDF5File.fixedStringType(width: width) }, elementSize: width,
            encode: { s, bytes throws(ValueError) in
                let utf8 = Array(s[keyPath: value].utf8)
                guard utf8.count <= width, !utf8.contains(0) else {
                    throw ValueError(message: "\"\(s[keyPath: value])\" is longer than \(width) UTF-8 bytes or holds a 0x00 byte")
                }
                bytes.append(contentsOf: utf8)
                bytes.append(contentsOf: repeatElement(0, count: width - utf8.count))
            })
        io.readColumn = { file, path, rows throws(StoreError) in
            let values = try file.readStrings(path)
            try checkRowCount(values.count, rows.count, file: file, path: path)
            for i in rows.indices { rows[i][keyPath: field] = values[i] }
        }
        return SnapshotDataset(name: name, element: .string, axes: [], kind: .row, optional: false, meaning: meaning, io: io)
    }

    /// A bookkeeping number, one per row.
    static func perRow<T: SnapshotNumber>(_ name: String, _ type: T.Type, _ meaning: String,
                                          _ value: @escaping @Sendable (LayerSnapshot) -> T,
                                          into field: @escaping @Sendable (inout SnapshotRow, T) -> Void) -> SnapshotDataset {
        var io = SnapshotColumnIO.numbers(T.self) { [value($0)] }
        io.readColumn = { file, path, rows throws(StoreError) in
            let values = try file.read(path, as: T.self).values
            try checkRowCount(values.count, rows.count, file: file, path: path)
            for i in rows.indices { field(&rows[i], values[i]) }
        }
        return SnapshotDataset(name: name, element: T.snapshotElement, axes: [], kind: .row, optional: false, meaning: meaning, io: io)
    }

    static func perRow<T: SnapshotNumber>(_ name: String, _ type: T.Type, _ meaning: String,
                                          _ value: @escaping @Sendable (LayerSnapshot) -> T,
                                          into field: WritableKeyPath<SnapshotRow, T> & Sendable) -> SnapshotDataset {
        perRow(name, type, meaning, value, into: { $0[keyPath: field] = $1 })
    }

    /// Values per unit (and per subgroup, concept or top image), one block per row. `normalise`
    /// checks a row read back and brings it to the snapshot's conventions.
    static func perUnit<T: SnapshotNumber>(_ name: String, _ axes: [SnapshotAxis], _ kind: Kind, _ meaning: String,
                                           _ key: WritableKeyPath<LayerSnapshot, [T]> & Sendable, optional: Bool = false,
                                           normalise: @escaping @Sendable ([T], SnapshotTaxonomy) throws(ValueError) -> [T] = { v, _ in v }
    ) -> SnapshotDataset {
        var io = SnapshotColumnIO.numbers(T.self) { $0[keyPath: key] }
        io.readRow = { file, path, row, taxonomy, snapshot throws(StoreError) in
            let values = try file.readRow(path, row: row, as: T.self)
            do throws(ValueError) {
                snapshot[keyPath: key] = try normalise(values, taxonomy)
            } catch {
                throw file.error(path, "row \(row), \(error.message)")
            }
        }
        return SnapshotDataset(name: name, element: T.snapshotElement, axes: axes, kind: kind, optional: optional,
                               meaning: meaning, io: io)
    }

    /// 0/1 per unit and subgroup or concept; any non-zero value reads as 1.
    static func flags(_ name: String, _ axes: [SnapshotAxis], _ meaning: String,
                      _ key: WritableKeyPath<LayerSnapshot, [UInt8]> & Sendable, optional: Bool = false) -> SnapshotDataset {
        perUnit(name, axes, .flags, meaning, key, optional: optional) { values, _ in values.map { $0 != 0 ? 1 : 0 } }
    }

    /// One index into the taxonomy's regions or concepts per unit, or −1.
    static func labels(_ name: String, of level: SnapshotTaxonomy.Level, _ meaning: String,
                       _ key: WritableKeyPath<LayerSnapshot, [Int32]> & Sendable) -> SnapshotDataset {
        perUnit(name, [.units], .labels(level), meaning, key) { values, taxonomy throws(ValueError) in
            let limit = taxonomy.count(of: level)
            if let bad = values.firstIndex(where: { $0 < -1 || $0 >= Int32(limit) }) {
                throw ValueError(message: "unit \(bad): \(values[bad]) is not −1 or one of the \(limit) \(level)")
            }
            return values
        }
    }

    /// Image ids per unit, −1 (any negative value) for none.
    static func imageIDs(_ name: String, _ meaning: String, _ key: WritableKeyPath<LayerSnapshot, [Int64]> & Sendable) -> SnapshotDataset {
        perUnit(name, [.units, .topImages], .imageIDs, meaning, key, optional: true) { values, _ in values.map { max($0, -1) } }
    }

    /// A value read back that breaks the format.
    struct ValueError: Error, Sendable {
        let message: String
    }
}

private func checkRowCount(_ count: Int, _ rows: Int, file: HDF5File, path: String) throws(StoreError) {
    guard count == rows else { throw file.error(path, "\(count) rows, but the layer's step dataset has \(rows)") }
}
