import Foundation
import HNDTestSupport
import Testing
@testable import HNDWire

/// A valid header with the given changes applied.
private func header(_ change: (inout Hndd_BatchHeader) -> Void = { _ in }) -> Hndd_BatchHeader {
    var header = Hndd_BatchHeader()
    header.protocolVersion = 1
    header.run = "run-a"
    header.layer = "layer4.2.conv1"
    header.step = 1200
    header.imageIds = [5, 3, 9]
    header.dtype = .float32
    header.units = 2
    header.height = 3
    header.width = 4
    change(&header)
    return header
}

private func decode(
    _ header: Hndd_BatchHeader, tensorBytes: Int, values: inout [Float]
) -> Result<DecodedBatch, BatchRejection> {
    let headerBytes = try! WireCodec.serialize(header)
    return decode(headerBytes: headerBytes, tensor: [UInt8](repeating: 0, count: tensorBytes), values: &values)
}

private func decode(headerBytes: [UInt8], tensor: [UInt8], values: inout [Float]) -> Result<DecodedBatch, BatchRejection> {
    headerBytes.withUnsafeBytes { headerRaw in
        tensor.withUnsafeBytes { tensorRaw in
            Result { () throws(BatchRejection) -> DecodedBatch in
                try BatchDecoder().decode(header: headerRaw, tensor: tensorRaw, into: &values)
            }
        }
    }
}

private func rejection(_ result: Result<DecodedBatch, BatchRejection>) -> BatchRejection? {
    if case let .failure(rejection) = result { return rejection }
    return nil
}

@Suite struct BatchDecoderTests {
    /// Bytes of the valid header: 3 images × 2 × 3 × 4 float32 = 288 bytes.
    let validTensorBytes = 3 * 2 * 3 * 4 * 4

    @Test func decodesEveryFieldAndValue() throws {
        let values = (0..<(3 * 24)).map { Float($0) * 0.25 - 7 }
        for dtype in [Hndd_DType.float32, .float16, .bfloat16] {
            let frames = try BatchEncoder.encode(
                run: "run-a", layer: "layer1", step: -3, imageIDs: [8, 1, 4], units: 2, height: 3, width: 4,
                dtype: dtype, values: values, rank: 2, sender: "host:77")
            var output: [Float] = []
            let batch = try decode(headerBytes: frames[0], tensor: frames[1], values: &output).get()
            #expect(batch == DecodedBatch(run: "run-a", layer: "layer1", step: -3, imageIDs: [8, 1, 4],
                                          units: 2, height: 3, width: 4, dtype: dtype, rank: 2, sender: "host:77"))
            #expect(batch.valueCount == 72)
            // Quarter steps between -7 and 10.75 are exact in all three types.
            #expect(output == values, "\(dtype)")
        }
    }

    @Test func aCheckedBatchLendsItsValuesWithTheHeaderParsedOnce() throws {
        let values = (0..<(3 * 24)).map { Float($0) * 0.25 - 7 }
        for dtype in [Hndd_DType.float32, .float16, .bfloat16] {
            let frames = try BatchEncoder.encode(run: "run-a", layer: "layer1", step: -3, imageIDs: [8, 1, 4], units: 2,
                                                 height: 3, width: 4, dtype: dtype, values: values, rank: 2, sender: "h")
            let message = ZMQMultipart(frames: try frames.map { try ZMQMessage(copying: $0) })
            let checked = try BatchDecoder().check(message)
            #expect(checked.header == DecodedBatch(run: "run-a", layer: "layer1", step: -3, imageIDs: [8, 1, 4], units: 2,
                                                   height: 3, width: 4, dtype: dtype, rank: 2, sender: "h"))
            var scratch: [Float] = []
            let (header, lent) = BatchDecoder().withDecoded(checked, scratch: &scratch) { ($0, Array($1)) }
            #expect(header == checked.header)
            #expect(lent == values, "\(dtype)")
        }
        // What `check` refuses is what decoding refuses, with the same words.
        let short = try BatchEncoder.encode(run: "r", layer: "l", step: 0, imageIDs: [1], units: 1, height: 1, width: 2, values: [1, 2])
        let message = ZMQMultipart(frames: [try ZMQMessage(copying: short[0]), try ZMQMessage(copying: Array(short[1].prefix(4)))])
        var output: [Float] = []
        let refused = #expect(throws: BatchRejection.self) { try BatchDecoder().check(message) }
        let decoded = #expect(throws: BatchRejection.self) { try BatchDecoder().decode(message, into: &output) }
        #expect(refused == .sizeMismatch(expectedBytes: 8, receivedBytes: 4) && refused == decoded)
        #expect(refused.map { "\($0)" } == decoded.map { "\($0)" })
    }

    @Test func reusesTheOutputBufferAcrossSizes() throws {
        var output: [Float] = []
        let large = try BatchEncoder.encode(run: "r", layer: "l", step: 0, imageIDs: [0, 1], units: 3, height: 2,
                                            width: 2, values: (0..<24).map(Float.init))
        _ = try decode(headerBytes: large[0], tensor: large[1], values: &output).get()
        #expect(output.count == 24)
        let capacity = output.capacity
        let small = try BatchEncoder.encode(run: "r", layer: "l", step: 0, imageIDs: [7], units: 3, height: 2,
                                            width: 2, values: (0..<12).map { Float(-$0) })
        let batch = try decode(headerBytes: small[0], tensor: small[1], values: &output).get()
        #expect(batch.imageIDs == [7])
        #expect(output == (0..<12).map { Float(-$0) })
        #expect(output.capacity == capacity)
    }

    @Test func rejectsWrongFrameCounts() throws {
        let frames = try BatchEncoder.encode(run: "r", layer: "l", step: 0, imageIDs: [1], units: 1, height: 1,
                                             width: 1, values: [1])
        var output: [Float] = [42]
        for count in [1, 3] {
            let messages = try (0..<count).map { index throws(WireError) in
                try ZMQMessage(copying: frames[min(index, 1)])
            }
            #expect(throws: BatchRejection.frameCount(received: count)) {
                try BatchDecoder().decode(ZMQMultipart(frames: messages), into: &output)
            }
        }
        // Frames discarded by receive(maxFrames:) still count.
        let kept = try [ZMQMessage(copying: frames[0]), ZMQMessage(copying: frames[1])]
        let rejection = #expect(throws: BatchRejection.self) {
            try BatchDecoder().decode(ZMQMultipart(frames: kept, frameCount: 40), into: &output)
        }
        #expect(rejection?.reason == .frameCount)
        #expect(output == [42], "a rejected batch leaves the buffer alone")
    }

    @Test func rejectsMalformedAndTruncatedHeaders() throws {
        var output: [Float] = [42]
        let valid = try WireCodec.serialize(header())
        let cases: [[UInt8]] = [
            [0xFF, 0xFF, 0xFF, 0xFF],                 // invalid wire type / varint
            Array(valid.prefix(valid.count - 1)),     // truncated in the last field
            Array(valid.prefix(7)),                   // truncated inside the run string
            [0x12, 0x05, 0xC3, 0x28, 0x41, 0x42, 0x43],  // run with invalid UTF-8
            Array("hello, this is not protobuf".utf8),
        ]
        for bytes in cases {
            let result = decode(headerBytes: bytes, tensor: [UInt8](repeating: 0, count: validTensorBytes), values: &output)
            #expect(rejection(result)?.reason == .malformedHeader, "\(bytes)")
        }
        #expect(output == [42])
    }

    @Test func rejectsEachBadField() {
        var output: [Float] = [42]
        let cases: [(Hndd_BatchHeader, Int, RejectionReason)] = [
            (header { $0.protocolVersion = 0 }, validTensorBytes, .badVersion),
            (header { $0.protocolVersion = 2 }, validTensorBytes, .badVersion),
            (header { $0.dtype = .unspecified }, validTensorBytes, .badDType),
            (header { $0.dtype = .UNRECOGNIZED(9) }, validTensorBytes, .badDType),
            (header { $0.run = "" }, validTensorBytes, .badName),
            (header { $0.layer = "" }, validTensorBytes, .badName),
            (header { $0.layer = "layer1\u{0}x" }, validTensorBytes, .badName),
            (header { $0.imageIds = [] }, 0, .badShape),
            (header { $0.units = 0 }, 0, .badShape),
            (header { $0.height = 0 }, 0, .badShape),
            (header { $0.width = 0 }, 0, .badShape),
            (header { $0.units = .max; $0.height = .max; $0.width = .max }, validTensorBytes, .badShape),
            (header(), validTensorBytes - 1, .sizeMismatch),
            (header(), validTensorBytes + 1, .sizeMismatch),
            (header(), 0, .sizeMismatch),
            (header { $0.dtype = .float16 }, validTensorBytes, .sizeMismatch),
            (header { $0.imageIds = [1, 2] }, validTensorBytes, .sizeMismatch),
        ]
        for (header, tensorBytes, reason) in cases {
            let result = decode(header, tensorBytes: tensorBytes, values: &output)
            #expect(rejection(result)?.reason == reason, "\(header)")
            // Every rejection explains itself.
            #expect((rejection(result)?.description.count ?? 0) > 20)
        }
        #expect(output == [42])
    }

    @Test func sizeMismatchSaysWhatWasExpected() {
        var output: [Float] = []
        let result = decode(header(), tensorBytes: 100, values: &output)
        #expect(rejection(result) == .sizeMismatch(expectedBytes: validTensorBytes, receivedBytes: 100))
        #expect(rejection(result)!.description.contains("288"))
    }

    @Test func acceptsUnknownFieldsForForwardCompatibility() throws {
        var bytes = try WireCodec.serialize(header())
        bytes += [0xF8, 0x01, 0x05]  // field 31, varint 5
        var output: [Float] = []
        let batch = try decode(headerBytes: bytes, tensor: [UInt8](repeating: 0, count: validTensorBytes),
                               values: &output).get()
        #expect(batch.layer == "layer4.2.conv1")
    }

    /// Random bytes, truncations and bit flips must never crash the decoder; anything it accepts
    /// must be self-consistent.
    @Test func survivesFuzzing() throws {
        var generator = SplitMix(seed: 2024)
        let values = (0..<24).map { Float($0) }
        let seeds = try [Hndd_DType.float32, .float16, .bfloat16].map { dtype throws(WireError) in
            try BatchEncoder.encode(run: "run", layer: "layer1", step: 9, imageIDs: [4], units: 2, height: 3,
                                    width: 4, dtype: dtype, values: values)
        }
        var accepted = 0
        var reasons: [RejectionReason: Int] = [:]
        var output: [Float] = []
        for iteration in 0..<30_000 {
            let seed = seeds[iteration % seeds.count]
            var headerBytes = seed[0]
            var tensor = seed[1]
            switch Int.random(in: 0..<5, using: &generator) {
            case 0:  // random header
                headerBytes = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            case 1:  // truncate the header
                headerBytes = Array(headerBytes.prefix(Int.random(in: 0...headerBytes.count, using: &generator)))
            case 2:  // flip bits in the header
                for _ in 0..<Int.random(in: 1...4, using: &generator) where !headerBytes.isEmpty {
                    headerBytes[Int.random(in: 0..<headerBytes.count, using: &generator)] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                }
            case 3:  // change the tensor size
                tensor = Array(repeating: 0, count: Int.random(in: 0...200, using: &generator))
            default:  // splice random bytes into the header
                let position = Int.random(in: 0...headerBytes.count, using: &generator)
                headerBytes.insert(contentsOf: (0..<Int.random(in: 1...8, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }, at: position)
            }
            switch decode(headerBytes: headerBytes, tensor: tensor, values: &output) {
            case let .success(batch):
                accepted += 1
                let size = TensorConversion.elementSize(of: batch.dtype)!
                #expect(batch.valueCount * size == tensor.count)
                #expect(output.count == batch.valueCount)
                #expect(!batch.layer.isEmpty && !batch.run.isEmpty && batch.imageCount > 0)
            case let .failure(rejection):
                reasons[rejection.reason, default: 0] += 1
            }
        }
        // The fuzzer reached both outcomes and several distinct rejections.
        #expect(accepted > 100)
        #expect(reasons.count >= 5, "\(reasons)")
    }
}
