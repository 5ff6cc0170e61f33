import Foundation
import HNDEngine

/// The open passes of a daemon on disk, so a restart on the same run directory resumes them with
/// exact numbers. Written whole to a temporary file, synced and renamed: a `kill -9` leaves the
/// previous checkpoint or the new one.
public enum Checkpoint {
    static let magic = Array("HNDDCKP1".utf8)

    /// Identifies the dictionary (and options) a checkpoint belongs to.
    public static func fingerprint(_ index: DictionaryIndex, _ options: DissectionOptions) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix<T>(_ values: [T]) {
            values.withUnsafeBytes { for b in $0 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01B3 } }
        }
        let d = index.dictionary
        mix(d.localLabel); mix(d.globalLabel); mix(d.ellipse)
        if let rasters = d.rasters { mix([rasters.fingerprint]) } // v1 fingerprints unchanged
        mix(Array((d.concepts + d.subgroups + d.regions + d.categories).joined(separator: "\u{0}").utf8))
        mix([options.quantile, options.iouFloor, Double(d.maskSize), d.ellipseChi2])
        return hash
    }

    public static func write(_ book: PassBook, to path: String) throws {
        var w = ByteWriter()
        w.bytes += magic
        w.put(fingerprint(book.index, book.options))
        w.put(Int64(book.open.count))
        for pass in book.open.values {
            w.put(pass.key.run); w.put(pass.key.layer); w.put(pass.key.step)
            w.put(pass.startedAt); w.put(pass.updatedAt)
            w.put(pass.duplicates)
            w.put(pass.accumulator.encodedState())
        }
        w.put(Int64(book.finished.count))
        for key in book.finished { w.put(key.run); w.put(key.layer); w.put(key.step) }
        let temporary = path + ".writing"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(w.bytes)) else {
            throw StateError("cannot write checkpoint \(temporary)")
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary, path) == 0 else { throw StateError("cannot rename checkpoint into \(path): \(String(cString: strerror(errno)))") }
    }

    /// Reads a checkpoint into `book`; returns the number of passes resumed.
    public static func read(_ path: String, into book: inout PassBook) throws(StateError) -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        var r = ByteReader(Array(data))
        for byte in magic { guard try r.get(UInt8.self) == byte else { throw StateError("\(path) is not an hndd checkpoint") } }
        guard try r.get(UInt64.self) == fingerprint(book.index, book.options) else {
            throw StateError("\(path) was written for another dictionary or other options; move it away to start afresh")
        }
        let count = try r.get(Int64.self)
        var passes: [OpenPass] = []
        for _ in 0..<count {
            let key = PassKey(run: try r.getString(), layer: try r.getString(), step: try r.get(Int64.self))
            let started = try r.get(Double.self), updated = try r.get(Double.self)
            let duplicates = try r.getArray(Int64.self)
            let state = try r.getArray(UInt8.self)
            let accumulator = try LayerAccumulator(decoding: state, index: book.index, options: book.options)
            var pass = OpenPass(key: key, accumulator: accumulator, startedAt: started, updatedAt: updated, duplicates: duplicates)
            pass.imagesCheckpointed = accumulator.imagesSeen
            passes.append(pass)
        }
        let finishedCount = try r.get(Int64.self)
        var finished: [PassKey] = []
        for _ in 0..<finishedCount {
            finished.append(PassKey(run: try r.getString(), layer: try r.getString(), step: try r.get(Int64.self)))
        }
        guard r.isAtEnd else { throw StateError("\(path): trailing bytes") }
        for pass in passes { book.restore(pass) }
        book.restoreFinished(finished)
        return passes.count
    }
}

extension PassBook {
    mutating func restoreFinished(_ keys: [PassKey]) {
        for key in keys { markFinished(key) }
    }
}
