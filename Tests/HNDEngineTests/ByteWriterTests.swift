import Testing
@testable import HNDEngine

/// A sink that keeps what it is handed, as a file would.
private final class MemorySink: ByteSink {
    var bytes: [UInt8] = []
    var writes = 0
    func write(_ raw: UnsafeRawBufferPointer) { bytes += raw; writes += 1 }
    func overwrite(at offset: Int, with raw: UnsafeRawBufferPointer) {
        for (i, b) in raw.enumerated() { bytes[offset + i] = b }
    }
}

@Suite struct ByteWriterTests {
    /// Writes a few megabytes, small values and large arrays mixed, length-prefixed sections
    /// straddling buffer boundaries included.
    func writeSample(into w: inout ByteWriter) {
        w.put(UInt32(7)); w.put("layer")
        for section in 0..<3 {
            w.putLengthPrefixed { inner in
                inner.put(Double(section))
                inner.put([Float](repeating: Float(section), count: 300_000 * (section + 1)))
                for i in 0..<1000 { inner.put(Int64(i)) }
                inner.put([Double](repeating: 0.5, count: 10))
            }
            w.put(Int64(section))
        }
    }

    @Test func streamingWritesTheSameBytesAsInMemory() {
        var whole = ByteWriter()
        writeSample(into: &whole)
        let sink = MemorySink()
        var streamed = ByteWriter(streamingTo: sink)
        writeSample(into: &streamed)
        #expect(streamed.bytes.count < whole.bytes.count) // handed on, not held
        streamed.flush()
        #expect(sink.writes > 1)
        #expect(sink.bytes == whole.bytes)
    }

    @Test func aLengthPrefixedSectionIsPutBytes() {
        var prefixed = ByteWriter(), plain = ByteWriter()
        prefixed.putLengthPrefixed { $0.put(UInt16(0x0102)); $0.put("ab") }
        var content = ByteWriter()
        content.put(UInt16(0x0102)); content.put("ab")
        plain.put(content.bytes)
        #expect(prefixed.bytes == plain.bytes)
    }
}
