import Testing
@testable import HNDEngine

/// The checkpoint format of the candidate maps did not change when `CandidateMaps.encode` stopped
/// gathering the columns first: the bytes are those of the gathered columns.
@Suite struct CandidateMapsStateTests {
    /// The encoder as it was: every column gathered, then written as an array.
    func gathered(_ stores: [CandidateMaps]) -> [UInt8] {
        var units: [Int32] = [], images: [Int32] = [], peaks: [Float] = [], kept: [UInt64] = [], values: [Float] = []
        var valueStart: [Int64] = [0]
        var scratch = [Float](repeating: 0, count: stores.first.map { $0.height * $0.width } ?? 0)
        for store in stores {
            store.forEach { record in
                let recordValues = scratch.withUnsafeMutableBufferPointer { scratch in
                    Array(UnsafeBufferPointer(start: record.values(wideningInto: scratch.baseAddress!), count: record.valueCount))
                }
                units.append(record.unit); images.append(record.image); peaks.append(record.peak)
                for j in 0..<store.wordsPerMap { kept.append(record.kept(j)) }
                values.append(contentsOf: recordValues)
                valueStart.append(Int64(values.count))
            }
        }
        var w = ByteWriter()
        w.put(units); w.put(images); w.put(peaks); w.put(kept); w.put(values); w.put(valueStart)
        return w.bytes
    }

    func dense(_ record: CandidateMaps.Record, of store: CandidateMaps) -> [Float] {
        var map = [Float](repeating: 0, count: store.height * store.width)
        map.withUnsafeMutableBufferPointer { store.expand(record, into: $0.baseAddress!) }
        return map
    }

    /// Whether the stores keep halves or floats: the same bytes (floats), and read back, the same
    /// stores.
    @Test(arguments: [false, true])
    func streamedColumnsAreTheGatheredBytes(halves: Bool) throws {
        let random = RandomCase(images: 240, units: 5, h: 4, w: 3, seed: 9, halves: halves)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary))
        try random.feed(&layer, order: Array(0..<240), batch: 16)
        #expect(layer.candidates.contains { $0.count > 0 })
        #expect(layer.candidates.allSatisfy { $0.halfValues == (halves && CandidateMaps.keepsHalves) })
        var streamed = ByteWriter()
        CandidateMaps.encode(layer.candidates, into: &streamed)
        #expect(streamed.bytes == gathered(layer.candidates))
        var widened = ByteWriter()
        CandidateMaps.encode(layer.candidates.map { $0.widened() }, into: &widened)
        #expect(widened.bytes == streamed.bytes)
        var reader = ByteReader(streamed.bytes)
        let restored = try CandidateMaps.decode(from: &reader, height: 4, width: 3, storeCount: 1, store: { _ in 0 }) { _, _ in true }[0]
        #expect(restored.halfValues == (halves && CandidateMaps.keepsHalves))
        #expect(restored.peaks == layer.candidates.flatMap(\.peaks))
        var maps: [[Float]] = []
        for store in layer.candidates { store.forEach { record in maps.append(dense(record, of: store)) } }
        var again: [[Float]] = []
        restored.forEach { record in again.append(dense(record, of: restored)) }
        #expect(again == maps)
    }
}
