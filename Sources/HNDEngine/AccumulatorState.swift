/// A layer's whole streaming state as bytes: a checkpoint *is* the state, so a pass that
/// straddles a daemon restart resumes with exactly the numbers it would have had.
extension LayerAccumulator {
    static let stateMagic: UInt32 = 0x484E_4432 // "HND2"

    public func encodedState() -> [UInt8] {
        var w = ByteWriter()
        encodeState(into: &w)
        return w.bytes
    }

    /// Writes the state into `w`, which may stream it on (a checkpoint file): the same bytes as
    /// `encodedState`, without holding them all.
    public func encodeState(into w: inout ByteWriter) {
        w.put(Self.stateMagic)
        w.put(layer)
        w.put(Int64(index.imageCount)); w.put(Int64(index.conceptCount))
        w.put(options.quantile); w.put(options.iouFloor); w.put(Int64(options.topImages))
        w.put(Int64(units)); w.put(Int64(height)); w.put(Int64(width))
        w.put(Int64(imagesSeen)); w.put(Int64(localImagesSeen))
        w.put(seen.map { $0 ? UInt8(1) : 0 })
        w.put(maxima)
        w.put(maskAreaSeen)
        for u in 0..<units {
            w.put(Int64(topValues[u].capacity)); w.put(topValues[u].lowerBound); w.put(topValues[u].values)
        }
        // The stores, as one: a restored state may run with another number of workers.
        if units > 0 { CandidateMaps.encode(candidates, into: &w) }
        // Optional trailing section (states written before it end here): the baseline maxima.
        if let baselineMaxima { w.put(Self.baselineTag); w.put(baselineMaxima) }
    }

    /// Restores a state written by `encodedState` for the same dictionary and options.
    public init(decoding bytes: [UInt8], index: DictionaryIndex, options: DissectionOptions) throws(StateError) {
        var r = ByteReader(bytes)
        let header = try LayerStateHeader(reading: &r)
        let layer = header.layer
        self.init(layer: layer, index: index, options: options)
        guard header.imageCount == index.imageCount, header.conceptCount == index.conceptCount else {
            throw StateError("the state of layer \(layer) belongs to another dictionary")
        }
        guard header.options == options else {
            throw StateError("the state of layer \(layer) was made with other options "
                             + "(quantile \(header.options.quantile), IoU floor \(header.options.iouFloor))")
        }
        let (c, h, w) = (header.units, header.height, header.width)
        if c > 0 { start(units: c, height: h, width: w) }
        imagesSeen = header.imagesSeen
        localImagesSeen = header.localImagesSeen
        seen = try r.getArray(UInt8.self).map { $0 == 1 }
        guard seen.count == index.imageCount else { throw StateError("seen-image set has the wrong size") }
        maxima = try r.getArray(Float.self)
        maskAreaSeen = try r.getArray(Double.self)
        guard maxima.count == c * index.imageCount, maskAreaSeen.count == index.conceptCount else {
            throw StateError("state arrays have the wrong size")
        }
        for u in 0..<c {
            let capacity = Int(try r.get(Int64.self))
            let bound = try r.get(Float.self)
            let values = try r.getArray(UInt32.self).map { Float(bitPattern: $0) }
            guard capacity == topValues[u].capacity,
                  let restored = TopValues.restore(capacity: capacity, values: values, lowerBound: bound, slack: h * w) else {
                throw StateError("the top values of unit \(u) do not fit the layer's quantile")
            }
            topValues[u] = restored
        }
        if c > 0 {
            let seen = seen, imageCount = index.imageCount
            var storeOfUnit = [Int](repeating: 0, count: c)
            for s in candidates.indices { for u in shardUnits(s) { storeOfUnit[u] = s } }
            candidates = try CandidateMaps.decode(from: &r, height: h, width: w, storeCount: candidates.count,
                                                  store: { storeOfUnit[Int($0)] }) { unit, image in
                unit >= 0 && Int(unit) < c && image >= 0 && Int(image) < imageCount && seen[Int(image)]
            }
        }
        if !r.isAtEnd {
            guard try r.get(UInt32.self) == Self.baselineTag else { throw StateError("trailing bytes after the state") }
            let baseline = try r.getArray(Float.self)
            guard c == 0 || baseline.count == c * index.imageCount else { throw StateError("the baseline maxima of layer \(layer) have the wrong size") }
            baselineMaxima = baseline
        }
        guard r.isAtEnd else { throw StateError("trailing bytes after the state") }
    }

    /// Marks the baseline section of a state.
    static let baselineTag: UInt32 = 0x4C53_4142 // "BASL"
}

/// The leading fields of a layer state: what it is of (layer, dictionary size, options, shape)
/// and how much it has seen, readable without the dictionary — so that states from several
/// daemons can be compared before any is restored.
public struct LayerStateHeader: Sendable, Equatable {
    public var layer: String
    public var imageCount: Int, conceptCount: Int
    public var options: DissectionOptions
    public var units: Int, height: Int, width: Int
    public var imagesSeen: Int, localImagesSeen: Int

    public init(_ bytes: [UInt8]) throws(StateError) {
        var r = ByteReader(bytes)
        try self.init(reading: &r)
    }

    init(reading r: inout ByteReader) throws(StateError) {
        let magic = try r.get(UInt32.self)
        guard magic != 0x484E_4431 else { // "HND1": tail histograms, before candidate maps
            throw StateError("a layer state of an earlier hndd (format HND1), which this version cannot resume; "
                             + "move the checkpoint away to start afresh")
        }
        guard magic == LayerAccumulator.stateMagic else { throw StateError("not a layer state") }
        layer = try r.getString()
        imageCount = Int(try r.get(Int64.self)); conceptCount = Int(try r.get(Int64.self))
        let (q, floor, k) = (try r.get(Double.self), try r.get(Double.self), try r.get(Int64.self))
        options = DissectionOptions(quantile: q, iouFloor: floor, topImages: Int(k))
        units = Int(try r.get(Int64.self)); height = Int(try r.get(Int64.self)); width = Int(try r.get(Int64.self))
        imagesSeen = Int(try r.get(Int64.self))
        localImagesSeen = Int(try r.get(Int64.self))
    }
}

public struct StateError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

#if _endian(big)
#error("checkpoints assume a little-endian machine")
#endif

public struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func get<T: FixedWidthInteger>(_: T.Type) throws(StateError) -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= bytes.count else { throw StateError("truncated state") }
        var v: T = 0
        for i in 0..<size { v |= T(bytes[offset + i]) << (8 * i) }
        offset += size
        return v
    }
    public mutating func get(_: Double.Type) throws(StateError) -> Double { Double(bitPattern: try get(UInt64.self)) }
    public mutating func get(_: Float.Type) throws(StateError) -> Float { Float(bitPattern: try get(UInt32.self)) }
    public mutating func getArray<T: FixedWidthInteger>(_: T.Type) throws(StateError) -> [T] {
        let count = try get(Int64.self)
        guard count >= 0, Int(count) * MemoryLayout<T>.size <= bytes.count - offset else { throw StateError("truncated state") }
        let size = Int(count) * MemoryLayout<T>.size
        let a = [T](unsafeUninitializedCapacity: Int(count)) { buffer, initialized in
            bytes.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + size)]))
            }
            initialized = Int(count)
        }
        offset += size
        return a
    }
    public mutating func getArray(_: Float.Type) throws(StateError) -> [Float] { try getArray(UInt32.self).map { Float(bitPattern: $0) } }
    public mutating func getArray(_: Double.Type) throws(StateError) -> [Double] { try getArray(UInt64.self).map { Double(bitPattern: $0) } }
    public mutating func getString() throws(StateError) -> String { String(decoding: try getArray(UInt8.self), as: UTF8.self) }
}
