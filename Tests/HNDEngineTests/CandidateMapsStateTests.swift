import Testing
@testable import HNDEngine

/// The checkpoint format of the candidate maps did not change when `CandidateMaps.encode` stopped
/// gathering the columns first: the bytes are those of the gathered columns.
@Suite struct CandidateMapsStateTests {
    /// The encoder as it was: every column gathered, then written as an array.
    func gathered(_ stores: [CandidateMaps]) -> [UInt8] {
        var units: [Int32] = [], images: [Int32] = [], peaks: [Float] = [], kept: [UInt64] = [], values: [Float] = []
        var valueStart: [Int64] = [0]
        for store in stores {
            store.forEach { record in
                units.append(record.unit); images.append(record.image); peaks.append(record.peak)
                for j in 0..<store.wordsPerMap { kept.append(record.kept(j)) }
                values.append(contentsOf: UnsafeBufferPointer(start: record.values, count: record.valueCount))
                valueStart.append(Int64(values.count))
            }
        }
        var w = ByteWriter()
        w.put(units); w.put(images); w.put(peaks); w.put(kept); w.put(values); w.put(valueStart)
        return w.bytes
    }

    @Test func streamedColumnsAreTheGatheredBytes() throws {
        let random = RandomCase(images: 240, units: 5, h: 4, w: 3, seed: 9)
        var layer = LayerAccumulator(layer: "l", index: DictionaryIndex(random.dictionary))
        try random.feed(&layer, order: Array(0..<240), batch: 16)
        #expect(layer.candidates.contains { $0.count > 0 })
        var streamed = ByteWriter()
        CandidateMaps.encode(layer.candidates, into: &streamed)
        #expect(streamed.bytes == gathered(layer.candidates))
    }
}
