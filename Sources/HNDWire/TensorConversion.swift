import CHNDCPU

/// Conversions between the wire's little-endian element types and `Float`.
///
/// float16 and bfloat16 are decoded by vector kernels in C (CHNDCPU: F16C or AVX-512 conversions,
/// on the process's vector path), which give the portable decoders' bits exactly. The portable
/// decoders are plain branch-free loops over integers, so that the compiler vectorises them
/// (`Float(Float16)` would go through a library call per element on x86-64 without F16C, and is
/// not available everywhere); they run on the portable path, and tests compare the kernels with
/// them. Source bytes may sit at any alignment (ZeroMQ frames guarantee at most 8 bytes,
/// sometimes less), so they are read with `loadUnaligned`.
public enum TensorConversion {
    /// Bytes per element of a wire dtype, nil for an unspecified or unknown one.
    public static func elementSize(of dtype: Hndd_DType) -> Int? {
        switch dtype {
        case .float32: return 4
        case .float16, .bfloat16: return 2
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }

    /// Converts `source`, holding `destination.count` elements of `dtype`, into `destination`.
    /// - Precondition: `source.count == destination.count * elementSize(of: dtype)`.
    public static func decode(
        _ source: UnsafeRawBufferPointer, dtype: Hndd_DType, into destination: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(elementSize(of: dtype).map { source.count == destination.count * $0 } ?? false,
                     "source size does not match destination count and dtype")
        switch dtype {
        case .float32: decodeFloat32(source, into: destination)
        case .float16: decodeFloat16(source, into: destination)
        case .bfloat16: decodeBFloat16(source, into: destination)
        case .unspecified, .UNRECOGNIZED: preconditionFailure("unreachable: checked above")
        }
    }

    static func decodeFloat32(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        #if _endian(little)
        UnsafeMutableRawPointer(base).copyMemory(from: source.baseAddress!, byteCount: destination.count * 4)
        #else
        for index in 0..<destination.count {
            let bits = source.loadUnaligned(fromByteOffset: index &* 4, as: UInt32.self)
            base[index] = Float(bitPattern: UInt32(littleEndian: bits))
        }
        #endif
    }

    static func decodeFloat16(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        if hndd_decode_float16(source.baseAddress!, Int64(destination.count), base) != 0 { return }
        decodeFloat16Portable(source, into: destination)
    }

    static func decodeFloat16Portable(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let input = source.baseAddress!
        for index in 0..<destination.count {
            let bits = UInt16(littleEndian: input.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self))
            base[index] = float(fromHalfBits: bits)
        }
    }

    static func decodeBFloat16(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        if hndd_decode_bfloat16(source.baseAddress!, Int64(destination.count), base) != 0 { return }
        decodeBFloat16Portable(source, into: destination)
    }

    static func decodeBFloat16Portable(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableBufferPointer<Float>) {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let input = source.baseAddress!
        for index in 0..<destination.count {
            let bits = UInt16(littleEndian: input.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self))
            base[index] = Float(bitPattern: UInt32(bits) &<< 16)
        }
    }

    /// The exact `Float` value of an IEEE binary16 bit pattern (every half is a float). A NaN
    /// keeps its sign and payload, and stays signalling or quiet: the bits move, nothing is
    /// decided (the vector kernels follow this rule).
    @inline(__always)
    public static func float(fromHalfBits half: UInt16) -> Float {
        let bits = UInt32(half)
        let sign = (bits & 0x8000) &<< 16
        // Exponent and mantissa moved to a float's positions (mantissa 10 -> 23 bits).
        let shifted = (bits & 0x7FFF) &<< 13
        let exponent = shifted & 0x0F80_0000
        // Normal numbers: rebias the exponent from 15 to 127 (add 112).
        var magnitude = shifted &+ (112 &<< 23)
        // Infinity and NaN: the exponent must become all ones, another +112 (payload kept).
        magnitude = exponent == 0x0F80_0000 ? magnitude &+ (112 &<< 23) : magnitude
        // Zero and subnormals (mantissa × 2^-24): give the mantissa the exponent of 2^-14, then
        // subtract 2^-14 — exact, since both operands are within a factor of two.
        let subnormal = Float(bitPattern: shifted &+ (113 &<< 23)) - Float(bitPattern: 113 &<< 23)
        magnitude = exponent == 0 ? subnormal.bitPattern : magnitude
        return Float(bitPattern: magnitude | sign)
    }

    /// The `Float` value of a bfloat16 bit pattern (its upper 16 bits).
    @inline(__always)
    public static func float(fromBFloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) &<< 16)
    }

    /// The nearest binary16 to `value`, ties to even (as numpy's and PyTorch's casts); values
    /// of magnitude ≥ 65520 become infinity, NaN stays a (quiet) NaN.
    public static func halfBits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let magnitude = bits & 0x7FFF_FFFF
        if magnitude >= 0x4780_0000 {  // ≥ 65536, infinity or NaN
            if magnitude > 0x7F80_0000 {
                return sign | 0x7E00 | UInt16(truncatingIfNeeded: (magnitude >> 13) & 0x3FF)
            }
            return sign | 0x7C00
        }
        if magnitude < 0x3880_0000 {  // below 2^-14: a half subnormal or zero
            // Adding 0.5 aligns the value's bits at the 2^-24 place; the float addition rounds
            // to nearest even exactly as the half must.
            let half = Float(bitPattern: 126 &<< 23)
            let sum = Float(bitPattern: magnitude) + half
            return sign | UInt16(truncatingIfNeeded: sum.bitPattern &- half.bitPattern)
        }
        // Normal: rebias, then round the 13 dropped mantissa bits to nearest even. A carry out of
        // the mantissa correctly bumps the exponent (up to infinity for [65520, 65536)).
        let mantissaOdd = (magnitude >> 13) & 1
        let rounded = magnitude &- (112 &<< 23) &+ 0x0FFF &+ mantissaOdd
        return sign | UInt16(truncatingIfNeeded: rounded >> 13)
    }

    /// The nearest bfloat16 to `value`, ties to even; NaN stays a (quiet) NaN.
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Encodes `values` as little-endian elements of `dtype` into `destination`.
    /// - Precondition: `destination.count == values.count * elementSize(of: dtype)`.
    public static func encode(
        _ values: UnsafeBufferPointer<Float>, dtype: Hndd_DType, into destination: UnsafeMutableRawBufferPointer
    ) {
        precondition(elementSize(of: dtype).map { destination.count == values.count * $0 } ?? false,
                     "destination size does not match value count and dtype")
        guard let output = destination.baseAddress, !values.isEmpty else { return }
        switch dtype {
        case .float32:
            for (index, value) in values.enumerated() {
                output.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        case .float16:
            for (index, value) in values.enumerated() {
                output.storeBytes(of: halfBits(from: value).littleEndian, toByteOffset: index * 2, as: UInt16.self)
            }
        case .bfloat16:
            for (index, value) in values.enumerated() {
                output.storeBytes(of: bfloat16Bits(from: value).littleEndian, toByteOffset: index * 2, as: UInt16.self)
            }
        case .unspecified, .UNRECOGNIZED: preconditionFailure("unreachable: checked above")
        }
    }
}
