import CHNDCPU
import Foundation
import HNDTestSupport
import Testing
@testable import HNDWire

/// The value of a binary floating-point bit pattern from first principles (Double arithmetic),
/// as an independent reference for the bit-twiddling decoders.
private func referenceValue(bits: UInt32, exponentBits: Int, mantissaBits: Int) -> Double {
    let mantissaMask = (UInt32(1) << mantissaBits) - 1
    let exponentMask = (UInt32(1) << exponentBits) - 1
    let sign: Double = (bits >> (exponentBits + mantissaBits)) & 1 == 1 ? -1 : 1
    let exponent = Int((bits >> mantissaBits) & exponentMask)
    let mantissa = Double(bits & mantissaMask) / Double(1 << mantissaBits)
    let bias = (1 << (exponentBits - 1)) - 1
    if exponent == Int(exponentMask) { return mantissa == 0 ? sign * .infinity : .nan }
    if exponent == 0 { return sign * mantissa * pow(2, Double(1 - bias)) }
    return sign * (1 + mantissa) * pow(2, Double(exponent - bias))
}

/// Decodes `bits` through the public buffer path, from a deliberately odd byte offset.
private func decodeThroughBuffer(_ bits: [UInt16], dtype: Hndd_DType) -> [Float] {
    var bytes = [UInt8](repeating: 0, count: bits.count * 2 + 1)
    for (index, value) in bits.enumerated() {
        bytes[1 + 2 * index] = UInt8(value & 0xFF)
        bytes[2 + 2 * index] = UInt8(value >> 8)
    }
    var output = [Float](repeating: -1, count: bits.count)
    bytes.withUnsafeBytes { raw in
        output.withUnsafeMutableBufferPointer { destination in
            TensorConversion.decode(UnsafeRawBufferPointer(rebasing: raw[1...]), dtype: dtype, into: destination)
        }
    }
    return output
}

@Suite struct TensorConversionTests {
    let allPatterns = (0...UInt16.max).map { $0 }

    @Test func float16DecodingIsExactForAllPatterns() {
        let decoded = decodeThroughBuffer(allPatterns, dtype: .float16)
        var nanCount = 0
        for (bits, value) in zip(allPatterns, decoded) {
            let expected = referenceValue(bits: UInt32(bits), exponentBits: 5, mantissaBits: 10)
            if expected.isNaN {
                #expect(value.isNaN, "half \(String(bits, radix: 16)) must decode to NaN")
                nanCount += 1
            } else {
                #expect(Double(value) == expected, "half \(String(bits, radix: 16))")
                #expect(value.sign == (bits & 0x8000 != 0 ? .minus : .plus), "sign of half \(String(bits, radix: 16))")
            }
            #if !(os(macOS) && arch(x86_64))
            let native = Float(Float16(bitPattern: bits))
            #expect(value.isNaN ? native.isNaN : value.bitPattern == native.bitPattern)
            #endif
        }
        #expect(nanCount == 2 * 1023)
    }

    @Test func bfloat16DecodingIsExactForAllPatterns() {
        let decoded = decodeThroughBuffer(allPatterns, dtype: .bfloat16)
        for (bits, value) in zip(allPatterns, decoded) {
            let expected = referenceValue(bits: UInt32(bits), exponentBits: 8, mantissaBits: 7)
            if expected.isNaN {
                #expect(value.isNaN, "bfloat16 \(String(bits, radix: 16)) must decode to NaN")
            } else {
                #expect(Double(value) == expected, "bfloat16 \(String(bits, radix: 16))")
            }
        }
    }

    @Test func float32DecodingReadsLittleEndianAtAnyAlignment() {
        let values: [Float] = [0, -0.0, 1.5, -0x1.8p-130, .greatestFiniteMagnitude, -.infinity, 3.14159]
        var bytes: [UInt8] = [0xAA]  // misalign by one byte
        for value in values {
            let bits = value.bitPattern
            bytes += [UInt8(bits & 0xFF), UInt8((bits >> 8) & 0xFF), UInt8((bits >> 16) & 0xFF), UInt8(bits >> 24)]
        }
        var output = [Float](repeating: 0, count: values.count)
        bytes.withUnsafeBytes { raw in
            output.withUnsafeMutableBufferPointer {
                TensorConversion.decode(UnsafeRawBufferPointer(rebasing: raw[1...]), dtype: .float32, into: $0)
            }
        }
        #expect(output.map(\.bitPattern) == values.map(\.bitPattern))
    }

    /// Encoding each half value exactly representable must give its own bits back.
    @Test func halfEncodingRoundTripsEveryHalf() {
        for bits in allPatterns {
            let value = TensorConversion.float(fromHalfBits: bits)
            let encoded = TensorConversion.halfBits(from: value)
            if value.isNaN {
                #expect(encoded & 0x7C00 == 0x7C00 && encoded & 0x03FF != 0, "NaN stays NaN")
            } else {
                #expect(encoded == bits, "half \(String(bits, radix: 16))")
            }
        }
    }

    /// Between two neighbouring halves, the exact midpoint goes to the one with an even mantissa,
    /// anything nearer one side goes to that side.
    @Test func halfEncodingRoundsToNearestEven() {
        var checked = 0
        for low in UInt16(0)..<0x7BFF {  // positive finite halves whose successor is finite
            let high = low + 1
            let lowValue = Double(TensorConversion.float(fromHalfBits: low))
            let highValue = Double(TensorConversion.float(fromHalfBits: high))
            let midpoint = Float((lowValue + highValue) / 2)  // exact: needs 12 significant bits
            let even = low & 1 == 0 ? low : high
            #expect(TensorConversion.halfBits(from: midpoint) == even)
            #expect(TensorConversion.halfBits(from: -midpoint) == even | 0x8000)
            #expect(TensorConversion.halfBits(from: midpoint.nextDown) == low)
            #expect(TensorConversion.halfBits(from: midpoint.nextUp) == high)
            checked += 1
        }
        #expect(checked == 0x7BFF)
        // Overflow: 65504 is the largest half; from the midpoint to the next binade (65520) on,
        // values round to infinity.
        #expect(TensorConversion.halfBits(from: 65519.996) == 0x7BFF)
        #expect(TensorConversion.halfBits(from: 65520) == 0x7C00)
        #expect(TensorConversion.halfBits(from: 1e10) == 0x7C00)
        #expect(TensorConversion.halfBits(from: -.infinity) == 0xFC00)
        #expect(TensorConversion.halfBits(from: 1e-10) == 0)
        #expect(TensorConversion.halfBits(from: -1e-10) == 0x8000)
        #expect(TensorConversion.halfBits(from: Float(sign: .plus, exponent: -25, significand: 1)) == 0)  // tie to even 0
        #expect(TensorConversion.halfBits(from: Float(sign: .plus, exponent: -25, significand: 1).nextUp) == 1)
        #expect(TensorConversion.halfBits(from: .nan) & 0x7E00 == 0x7E00)
    }

    #if !(os(macOS) && arch(x86_64))
    @Test func halfEncodingMatchesSwiftFloat16OnRandomFloats() {
        var generator = SplitMix(seed: 42)
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
            let native = Float16(value).bitPattern
            let ours = TensorConversion.halfBits(from: value)
            if value.isNaN {
                #expect(ours & 0x7C00 == 0x7C00 && ours & 0x03FF != 0)
            } else {
                #expect(ours == native, "float bits \(String(value.bitPattern, radix: 16))")
            }
        }
    }
    #endif

    @Test func bfloat16EncodingRoundsToNearestEven() {
        var generator = SplitMix(seed: 7)
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
            let encoded = TensorConversion.bfloat16Bits(from: value)
            if value.isNaN {
                #expect(TensorConversion.float(fromBFloat16Bits: encoded).isNaN)
                continue
            }
            // Reference: the nearer of the two bfloat16 neighbours by exact Double distance; on a
            // tie the one whose last mantissa bit is 0.
            let truncated = UInt16(value.bitPattern >> 16)
            let candidates = [truncated, truncated &+ 1]
            // IEEE rounds as if the exponent were unbounded, then overflows: the pattern after
            // the largest finite bfloat16 stands for ±2^128 (and becomes infinity).
            let distances = candidates.map { candidate -> Double in
                let decoded = Double(TensorConversion.float(fromBFloat16Bits: candidate))
                let unbounded = candidate & 0x7FFF == 0x7F80 ? Double(signOf: decoded, magnitudeOf: 0x1p128) : decoded
                return abs(unbounded - Double(value))
            }
            let expected: UInt16
            if distances[0] == distances[1] {
                expected = candidates.first { $0 & 1 == 0 }!
            } else {
                expected = distances[0] < distances[1] ? candidates[0] : candidates[1]
            }
            #expect(encoded == expected, "float bits \(String(value.bitPattern, radix: 16))")
        }
        // Ties at 1.0: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and goes to even (1.0).
        #expect(TensorConversion.bfloat16Bits(from: 1 + 0x1p-8) == 0x3F80)
        #expect(TensorConversion.bfloat16Bits(from: 1 + 3 * 0x1p-8) == 0x3F82)
        #expect(TensorConversion.bfloat16Bits(from: .greatestFiniteMagnitude) == 0x7F80)
        #expect(TensorConversion.bfloat16Bits(from: -.greatestFiniteMagnitude) == 0xFF80)
        #expect(TensorConversion.bfloat16Bits(from: Float(bitPattern: 0x7F7F_7FFF)) == 0x7F7F)  // below the midpoint
    }

    @Test func encodingThenDecodingEachDType() {
        let values: [Float] = [0, 1, -1, 0.1, 1000.5, -3.0e-5, 65504, 2.5e38]
        for dtype in [Hndd_DType.float32, .float16, .bfloat16] {
            let size = TensorConversion.elementSize(of: dtype)!
            var bytes = [UInt8](repeating: 0, count: values.count * size)
            values.withUnsafeBufferPointer { input in
                bytes.withUnsafeMutableBytes { TensorConversion.encode(input, dtype: dtype, into: $0) }
            }
            var decoded = [Float](repeating: 0, count: values.count)
            bytes.withUnsafeBytes { raw in
                decoded.withUnsafeMutableBufferPointer { TensorConversion.decode(raw, dtype: dtype, into: $0) }
            }
            for (value, result) in zip(values, decoded) {
                switch dtype {
                case .float32:
                    #expect(result == value)
                case .float16:
                    let expected = TensorConversion.float(fromHalfBits: TensorConversion.halfBits(from: value))
                    #expect(result.bitPattern == expected.bitPattern)
                    if abs(value) <= 65504 && abs(value) >= 1e-4 {
                        #expect(abs(result - value) <= abs(value) * 0x1p-11, "float16 of \(value)")
                    }
                default:
                    #expect(abs(result - value) <= abs(value) * 0x1p-8, "bfloat16 of \(value)")
                }
            }
        }
    }
}

/// One way of decoding 16-bit elements: the portable Swift loop, the process's choice, or one
/// vector path's C kernel called directly.
private struct HalfDecoder {
    let name: String
    let decode: (UnsafeRawPointer, Int, UnsafeMutablePointer<Float>) -> Void

    /// Every decoder of `dtype` (float16 or bfloat16) this CPU can run, but the portable one.
    static func runnable(_ dtype: Hndd_DType) -> [HalfDecoder] {
        let half = dtype == .float16
        var all = [HalfDecoder(name: "the process's (\(String(cString: hndd_vector_path_name())))") { source, count, destination in
            TensorConversion.decode(UnsafeRawBufferPointer(start: source, count: 2 * count), dtype: dtype,
                                    into: UnsafeMutableBufferPointer(start: destination, count: count))
        }]
        if hndd_cpu_supports(HNDD_PATH_AVX2) != 0 {
            all.append(HalfDecoder(name: "avx2") { half ? hndd_decode_float16_avx2($0, Int64($1), $2) : hndd_decode_bfloat16_avx2($0, Int64($1), $2) })
        }
        if hndd_cpu_supports(HNDD_PATH_AVX512) != 0 {
            all.append(HalfDecoder(name: "avx512") { half ? hndd_decode_float16_avx512($0, Int64($1), $2) : hndd_decode_bfloat16_avx512($0, Int64($1), $2) })
        }
        return all
    }

    static func portable(_ dtype: Hndd_DType, _ source: UnsafeRawPointer, _ count: Int, _ destination: UnsafeMutablePointer<Float>) {
        let input = UnsafeRawBufferPointer(start: source, count: 2 * count)
        let output = UnsafeMutableBufferPointer(start: destination, count: count)
        if dtype == .float16 { TensorConversion.decodeFloat16Portable(input, into: output) } else { TensorConversion.decodeBFloat16Portable(input, into: output) }
    }
}

/// The vector decoders give the portable decoders' bits for every pattern — subnormals,
/// infinities, signalling and quiet NaNs with their payloads — at any alignment and length.
@Suite struct VectorDecodingTests {
    /// Every 16-bit pattern, little-endian, from byte 1 of the buffer (odd alignment).
    let patterns: [UInt8] = [0xAA] + (0...UInt16.max).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }

    @Test(arguments: [Hndd_DType.float16, .bfloat16])
    func everyPatternDecodesToThePortableBits(dtype: Hndd_DType) {
        let count = 1 << 16
        var expected = [Float](repeating: 0, count: count)
        patterns.withUnsafeBytes { raw in
            expected.withUnsafeMutableBufferPointer { HalfDecoder.portable(dtype, raw.baseAddress! + 1, count, $0.baseAddress!) }
            for decoder in HalfDecoder.runnable(dtype) {
                var output = [Float](repeating: 1, count: count)
                output.withUnsafeMutableBufferPointer { decoder.decode(raw.baseAddress! + 1, count, $0.baseAddress!) }
                let wrong = (0..<count).filter { output[$0].bitPattern != expected[$0].bitPattern }
                #expect(wrong.isEmpty, "\(decoder.name): \(wrong.count) patterns differ, first \(wrong.prefix(4).map { String($0, radix: 16) })")
            }
        }
    }

    /// Lengths around the 8- and 16-lane blocks, each from every offset of a block: the tail is
    /// converted and nothing past the destination is written.
    @Test(arguments: [Hndd_DType.float16, .bfloat16])
    func tailsAndOffsetsDecodeExactlyInPlace(dtype: Hndd_DType) {
        patterns.withUnsafeBytes { raw in
            for decoder in HalfDecoder.runnable(dtype) {
                for count in 0...41 {
                    for offset in [1, 2, 3, 17, 2 * 0x7C00 + 1, 2 * 0xFBF0 + 1] { // odd and even bytes; infinities and NaNs
                        var expected = [Float](repeating: 0, count: count + 1), output = [Float](repeating: 0, count: count + 1)
                        expected[count] = -7; output[count] = -7
                        expected.withUnsafeMutableBufferPointer { HalfDecoder.portable(dtype, raw.baseAddress! + offset, count, $0.baseAddress!) }
                        output.withUnsafeMutableBufferPointer { decoder.decode(raw.baseAddress! + offset, count, $0.baseAddress!) }
                        #expect(output.map(\.bitPattern) == expected.map(\.bitPattern), "\(decoder.name): \(count) from byte \(offset)")
                    }
                }
            }
        }
    }

    /// The rules themselves, by hand: the bits every path must give.
    @Test func halfSpecialValuesByHand() {
        let cases: [(UInt16, UInt32)] = [
            (0x0000, 0x0000_0000), (0x8000, 0x8000_0000),       // ±0
            (0x0001, 0x3380_0000), (0x83FF, 0xB87F_C000),       // subnormals: 2^-24, −(2^-14 − 2^-24)
            (0x0400, 0x3880_0000), (0x7BFF, 0x477F_E000),       // smallest normal, 65504
            (0x7C00, 0x7F80_0000), (0xFC00, 0xFF80_0000),       // ±∞
            (0x7E00, 0x7FC0_0000), (0x7C01, 0x7F80_2000),       // quiet NaN; signalling stays signalling
            (0xFDFF, 0xFFBF_E000), (0x7FFF, 0x7FFF_E000),       // payloads kept, sign kept
        ]
        let bytes = [UInt8](repeating: 0, count: 1) + cases.flatMap { [UInt8($0.0 & 0xFF), UInt8($0.0 >> 8)] }
        bytes.withUnsafeBytes { raw in
            var portable = [Float](repeating: 0, count: cases.count)
            portable.withUnsafeMutableBufferPointer { HalfDecoder.portable(.float16, raw.baseAddress! + 1, cases.count, $0.baseAddress!) }
            #expect(portable.map(\.bitPattern) == cases.map(\.1))
            for decoder in HalfDecoder.runnable(.float16) {
                var output = [Float](repeating: 0, count: cases.count)
                output.withUnsafeMutableBufferPointer { decoder.decode(raw.baseAddress! + 1, cases.count, $0.baseAddress!) }
                #expect(output.map(\.bitPattern) == cases.map(\.1), "\(decoder.name)")
            }
        }
    }
}

/// The exact float-to-half encoders (the candidate maps keep halves with them): every half's
/// float encodes back to the half's bits and counts as exact; a single float that is not a half
/// anywhere in a buffer makes the whole call report it, at every length around the lane blocks.
@Suite struct ExactHalfEncodingTests {
    struct Encoder {
        let name: String
        let encode: (UnsafePointer<Float>, Int, UnsafeMutablePointer<UInt16>) -> Int32
    }

    static var runnable: [Encoder] {
        var all: [Encoder] = []
        if hndd_vector_path() != HNDD_PATH_PORTABLE {
            all.append(Encoder(name: "the process's (\(String(cString: hndd_vector_path_name())))") { hndd_encode_float16_exact($0, Int64($1), $2) })
        }
        if hndd_cpu_supports(HNDD_PATH_AVX2) != 0 { all.append(Encoder(name: "avx2") { hndd_encode_float16_exact_avx2($0, Int64($1), $2) }) }
        if hndd_cpu_supports(HNDD_PATH_AVX512) != 0 { all.append(Encoder(name: "avx512") { hndd_encode_float16_exact_avx512($0, Int64($1), $2) }) }
        return all
    }

    /// Every half that is not a NaN, as its float.
    let halves: [UInt16] = (0...UInt16.max).filter { $0 & 0x7C00 != 0x7C00 || $0 & 0x3FF == 0 }

    @Test(.enabled(if: !runnable.isEmpty, "no vector path on this CPU"))
    func everyHalfEncodesToItsOwnBits() {
        let floats = halves.map(TensorConversion.float(fromHalfBits:))
        for encoder in Self.runnable {
            var output = [UInt16](repeating: 0x1234, count: floats.count)
            let exact = floats.withUnsafeBufferPointer { f in output.withUnsafeMutableBufferPointer { encoder.encode(f.baseAddress!, f.count, $0.baseAddress!) } }
            #expect(exact == 1, "\(encoder.name)")
            let wrong = halves.indices.filter { output[$0] != halves[$0] }
            #expect(wrong.isEmpty, "\(encoder.name): \(wrong.count) halves differ, first \(wrong.prefix(4).map { String(halves[$0], radix: 16) })")
        }
    }

    /// Floats that are not halves: next to one, past 65504 (rounding to 65504 or to infinity), and
    /// below the smallest subnormal.
    @Test(.enabled(if: !runnable.isEmpty, "no vector path on this CPU"),
          arguments: [Float(1).nextUp, Float(0.1), 65505, 65520, 1e9, -3e-8, 1e-30, Float(2048).nextDown])
    func oneFloatThatIsNotAHalfIsReportedAtAnyLengthAndPlace(notAHalf: Float) {
        for encoder in Self.runnable {
            for count in 1...41 {
                for place in Set([0, count / 2, count - 1]) {
                    var floats = (0..<count).map { Float($0) * 0.25 - 3 }
                    var output = [UInt16](repeating: 0x5555, count: count + 1)
                    #expect(floats.withUnsafeBufferPointer { f in output.withUnsafeMutableBufferPointer { encoder.encode(f.baseAddress!, count, $0.baseAddress!) } } == 1)
                    #expect(output[..<count].map(TensorConversion.float(fromHalfBits:)) == floats && output[count] == 0x5555,
                            "\(encoder.name): \(count) halves, nothing past them written")
                    floats[place] = notAHalf
                    #expect(floats.withUnsafeBufferPointer { f in output.withUnsafeMutableBufferPointer { encoder.encode(f.baseAddress!, count, $0.baseAddress!) } } == 0,
                            "\(encoder.name): \(notAHalf) at \(place) of \(count)")
                    #expect(output[count] == 0x5555)
                }
            }
        }
    }
}
