import Foundation
import HNDEngine

/// The open passes of a daemon on disk, so a restart on the same run directory resumes them with
/// exact numbers. Streamed to a temporary file (never built whole in memory: several large open
/// passes would double the daemon's memory), synced and renamed: a `kill -9` leaves the previous
/// checkpoint or the new one. The same format holds the kept passes of an image shard
/// (`ShardStates`), and `hndd merge` reads both.
public enum Checkpoint {
    static let magic = Array("HNDDCKP1".utf8)

    /// Identifies the dictionary and options a checkpoint belongs to.
    public static func fingerprint(_ index: DictionaryIndex, _ options: DissectionOptions) -> UInt64 {
        var hash = FNV1a(contentHash(index.dictionary))
        hash.mix([options.quantile, options.iouFloor, Double(index.dictionary.maskSize), index.dictionary.ellipseChi2])
        return hash.value
    }

    /// Identifies a dictionary by what it holds, not by its name: daemons whose shards are merged
    /// must serve the same one.
    public static func dictionaryFingerprint(_ index: DictionaryIndex) -> UInt64 {
        var hash = FNV1a(contentHash(index.dictionary))
        hash.mix([Double(index.dictionary.maskSize), index.dictionary.ellipseChi2])
        return hash.value
    }

    /// The labels, masks and names, as both fingerprints begin.
    static func contentHash(_ d: FaceDictionary) -> UInt64 {
        var hash = FNV1a()
        hash.mix(d.localLabel); hash.mix(d.globalLabel); hash.mix(d.ellipse)
        if let rasters = d.rasters { hash.mix([rasters.fingerprint]) } // v1 fingerprints unchanged
        hash.mix(Array((d.concepts + d.subgroups + d.regions + d.categories).joined(separator: "\u{0}").utf8))
        return hash.value
    }

    public static func write(_ book: PassBook, to path: String) throws {
        try write([book], index: book.index, options: book.options, to: path)
    }

    /// The passes of several books as one checkpoint: a daemon's layer workers' (each layer's
    /// passes are in one of them), written while none of them changes.
    public static func write(_ books: [PassBook], index: DictionaryIndex, options: DissectionOptions, to path: String) throws {
        var baselines: [RunLayer: [Float]] = [:]
        for book in books { baselines.merge(book.baselines) { kept, _ in kept } }
        try write(passes: books.flatMap { Array($0.open.values) }, finished: books.flatMap { Array($0.finished) },
                  index: index, options: options, baselines: baselines, to: path)
    }

    public static func write(passes: [OpenPass], finished: [PassKey], index: DictionaryIndex, options: DissectionOptions,
                             baselines: [RunLayer: [Float]] = [:], to path: String) throws {
        let temporary = path + ".writing"
        let file = try CheckpointFile(creating: temporary)
        var w = ByteWriter(streamingTo: file)
        for byte in magic { w.put(byte) }
        w.put(fingerprint(index, options))
        w.put(Int64(passes.count))
        for pass in passes {
            w.put(pass.key.run); w.put(pass.key.layer); w.put(pass.key.step)
            w.put(pass.startedAt); w.put(pass.updatedAt)
            w.put(pass.duplicates)
            w.putLengthPrefixed { pass.accumulator.encodeState(into: &$0) }
        }
        w.put(Int64(finished.count))
        for key in finished { w.put(key.run); w.put(key.layer); w.put(key.step) }
        // Optional trailing section (checkpoints written before it end here): each run's layer's
        // baseline maxima.
        if !baselines.isEmpty {
            w.put(Int64(baselines.count))
            for (runLayer, maxima) in baselines.sorted(by: { ($0.key.run, $0.key.layer) < ($1.key.run, $1.key.layer) }) {
                w.put(runLayer.run); w.put(runLayer.layer); w.put(maxima)
            }
        }
        w.flush()
        try file.syncAndClose()
        guard rename(temporary, path) == 0 else { throw StateError("cannot rename checkpoint into \(path): \(String(cString: strerror(errno)))") }
    }

    /// One pass of a checkpoint, its state still bytes.
    public struct Entry: Sendable {
        public let key: PassKey
        public let startedAt: Double, updatedAt: Double
        public let duplicates: [Int64]
        public let state: [UInt8]
    }

    /// What a checkpoint file holds, read without the dictionary (so `hndd merge` can say what
    /// disagrees before restoring anything).
    public struct Contents: Sendable {
        public let fingerprint: UInt64
        public internal(set) var passes: [Entry]
        public let finished: [PassKey]
        /// Baseline maxima per run's layer (none in a checkpoint written before them).
        public var baselines: [RunLayer: [Float]] = [:]
    }

    /// Reads a checkpoint file; nil when there is none.
    public static func contents(_ path: String) throws(StateError) -> Contents? {
        guard let bytes = try fileBytes(path) else { return nil }
        var r = ByteReader(bytes)
        for byte in magic { guard try r.get(UInt8.self) == byte else { throw StateError("\(path) is not an hndd checkpoint") } }
        let fingerprint = try r.get(UInt64.self)
        var passes: [Entry] = []
        for _ in 0..<(try r.get(Int64.self)) {
            let key = PassKey(run: try r.getString(), layer: try r.getString(), step: try r.get(Int64.self))
            passes.append(Entry(key: key, startedAt: try r.get(Double.self), updatedAt: try r.get(Double.self),
                                duplicates: try r.getArray(Int64.self), state: try r.getArray(UInt8.self)))
        }
        var finished: [PassKey] = []
        for _ in 0..<(try r.get(Int64.self)) {
            finished.append(PassKey(run: try r.getString(), layer: try r.getString(), step: try r.get(Int64.self)))
        }
        var baselines: [RunLayer: [Float]] = [:]
        if !r.isAtEnd {
            for _ in 0..<(try r.get(Int64.self)) {
                baselines[RunLayer(run: try r.getString(), layer: try r.getString())] = try r.getArray(Float.self)
            }
        }
        guard r.isAtEnd else { throw StateError("\(path): trailing bytes") }
        return Contents(fingerprint: fingerprint, passes: passes, finished: finished, baselines: baselines)
    }

    /// The passes of a checkpoint file restored for `index` and `options`, which it must have been
    /// written for.
    public static func passes(_ path: String, index: DictionaryIndex, options: DissectionOptions)
        throws(StateError) -> (passes: [OpenPass], finished: [PassKey], baselines: [RunLayer: [Float]])? {
        guard var contents = try contents(path) else { return nil }
        guard contents.fingerprint == fingerprint(index, options) else {
            throw StateError("\(path) was written for another dictionary or other options; move it away to start afresh")
        }
        // Each entry's bytes are let go once decoded: a restart holds the encoded and the decoded
        // states of one pass at a time, not of all (several GB with big layers).
        var passes: [OpenPass] = []
        while let entry = contents.passes.popLast() {
            let accumulator = try LayerAccumulator(decoding: entry.state, index: index, options: options)
            var pass = OpenPass(key: entry.key, accumulator: accumulator, startedAt: entry.startedAt, updatedAt: entry.updatedAt,
                                duplicates: entry.duplicates)
            pass.imagesCheckpointed = accumulator.imagesSeen
            passes.append(pass)
        }
        return (passes.reversed(), contents.finished, contents.baselines)
    }

    /// The bytes of the file at `path`, read straight into one array (no `Data` copy beside it);
    /// nil when there is no such file.
    static func fileBytes(_ path: String) throws(StateError) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw StateError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw StateError("cannot read \(path): \(String(cString: strerror(errno)))") }
        let size = Int(status.st_size)
        var failure: StateError?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            while initialized < size {
                let n = Glibc.read(descriptor, buffer.baseAddress! + initialized, size - initialized)
                if n < 0, errno == EINTR { continue }
                if n < 0 { failure = StateError("cannot read \(path): \(String(cString: strerror(errno)))"); return }
                if n == 0 { failure = StateError("\(path) shrank while being read"); return }
                initialized += n
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Reads a checkpoint into `book`; returns the number of passes resumed.
    public static func read(_ path: String, into book: inout PassBook) throws(StateError) -> Int {
        guard let (passes, finished, baselines) = try passes(path, index: book.index, options: book.options) else { return 0 }
        book.resume(passes, finished: finished, baselines: baselines)
        return passes.count
    }
}

/// 64-bit FNV-1a over the bytes of arrays: a fingerprint against mix-ups, not an adversary.
struct FNV1a {
    private(set) var value: UInt64
    init(_ seed: UInt64 = 0xCBF2_9CE4_8422_2325) { value = seed }
    mutating func mix<T>(_ values: [T]) {
        values.withUnsafeBytes { for b in $0 { value = (value ^ UInt64(b)) &* 0x100_0000_01B3 } }
    }
}

extension PassBook {
    mutating func restoreFinished(_ keys: [PassKey]) {
        for key in keys { markFinished(key) }
    }

    /// Takes back what a checkpoint holds (its open passes, finished keys and baselines), then
    /// forgets the open passes the snapshot file already holds (`written`) and refuses their
    /// late batches.
    mutating func resume(_ passes: [OpenPass], finished: [PassKey], baselines: [RunLayer: [Float]], written: [PassKey] = []) {
        for pass in passes { restore(pass) }
        restoreFinished(finished)
        restoreBaselines(baselines)
        for key in written { dropWritten(key) }
    }

    /// Every open pass is in the checkpoint just written, as far as it has images now.
    mutating func markCheckpointed() {
        for key in open.keys { update(key) { $0.imagesCheckpointed = $0.accumulator.imagesSeen } }
    }
}
