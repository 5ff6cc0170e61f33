import CZlib

/// A small PNG encoder for the report's probe-image thumbnails: 8-bit RGB with per-row adaptive
/// filtering (PNG 1.2), compressed by the system's zlib.
public enum PNGEncoder {
    /// Encodes `rgb` (row-major, 3 bytes a pixel) of a `width`×`height` image.
    public static func encode(rgb: [UInt8], width: Int, height: Int) -> [UInt8] {
        precondition(width > 0 && height > 0 && rgb.count == width * height * 3, "PNG: pixel count does not match the size")
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header: [UInt8] = []
        header.appendBigEndian(UInt32(width))
        header.appendBigEndian(UInt32(height))
        header += [8, 2, 0, 0, 0]  // bit depth 8, colour type RGB, deflate, adaptive filtering, no interlace
        appendChunk("IHDR", header, to: &png)
        appendChunk("IDAT", zlibCompress(filteredScanlines(rgb: rgb, width: width, height: height)), to: &png)
        appendChunk("IEND", [], to: &png)
        return png
    }

    static func appendChunk(_ type: String, _ data: [UInt8], to png: inout [UInt8]) {
        png.appendBigEndian(UInt32(data.count))
        let typeAndData = Array(type.utf8) + data
        png += typeAndData
        png.appendBigEndian(crc32(typeAndData))
    }

    /// Each scanline prefixed by the filter (None, Sub, Up, Average, Paeth) with the smallest sum
    /// of absolute residuals — the usual heuristic of PNG encoders.
    static func filteredScanlines(rgb: [UInt8], width: Int, height: Int) -> [UInt8] {
        let stride = width * 3, bpp = 3
        var out: [UInt8] = []
        out.reserveCapacity((stride + 1) * height)
        let zeros = [UInt8](repeating: 0, count: stride)
        var candidate = [UInt8](repeating: 0, count: stride)
        var best = candidate
        for y in 0..<height {
            let line = Array(rgb[(y * stride)..<((y + 1) * stride)])
            let above = y > 0 ? Array(rgb[((y - 1) * stride)..<(y * stride)]) : zeros
            var bestFilter: UInt8 = 0, bestCost = Int.max
            for filter in UInt8(0)...4 {
                var cost = 0
                for i in 0..<stride {
                    let a = i >= bpp ? Int(line[i - bpp]) : 0
                    let b = Int(above[i])
                    let c = i >= bpp ? Int(above[i - bpp]) : 0
                    let predictor: Int
                    switch filter {
                    case 0: predictor = 0
                    case 1: predictor = a
                    case 2: predictor = b
                    case 3: predictor = (a + b) / 2
                    default: predictor = paeth(a, b, c)
                    }
                    let residual = UInt8(truncatingIfNeeded: Int(line[i]) - predictor)
                    candidate[i] = residual
                    cost += residual < 128 ? Int(residual) : 256 - Int(residual)
                }
                if cost < bestCost { bestCost = cost; bestFilter = filter; best = candidate }
            }
            out.append(bestFilter)
            out += best
        }
        return out
    }

    static func paeth(_ a: Int, _ b: Int, _ c: Int) -> Int {
        let p = a + b - c
        let pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    }

    /// The zlib stream (RFC 1950) of `data`, from zlib itself at its best compression.
    static func zlibCompress(_ data: [UInt8]) -> [UInt8] {
        var length = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(length))
        let status = out.withUnsafeMutableBufferPointer { out in
            data.withUnsafeBufferPointer { data in
                compress2(out.baseAddress, &length, data.baseAddress, uLong(data.count), Z_BEST_COMPRESSION)
            }
        }
        // compressBound is enough by definition and the level is valid: only memory can fail.
        precondition(status == Z_OK, "zlib compress2 failed (\(status)): out of memory")
        return Array(out.prefix(Int(length)))
    }

    /// PNG's chunk checksum is zlib's CRC-32.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        UInt32(bytes.withUnsafeBufferPointer { CZlib.crc32(0, $0.baseAddress, uInt($0.count)) })
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)])
    }
}
