import CZlib
import HNDTestSupport
import Testing
@testable import HNDReport

/// Decodes what `PNGEncoder` wrote, independently: chunks and their CRCs, zlib's inflate, and
/// the five scanline filters undone as PNG 1.2 defines them.
struct DecodedPNG {
    var width = 0, height = 0
    var rgb: [UInt8] = []

    init(_ png: [UInt8]) throws {
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var at = 8, idat: [UInt8] = [], types: [String] = []
        func word(_ i: Int) -> Int { png[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while at < png.count {
            let length = word(at)
            let typeAndData = Array(png[(at + 4)..<(at + 8 + length)])
            let crc = typeAndData.withUnsafeBufferPointer { CZlib.crc32(0, $0.baseAddress, uInt($0.count)) }
            #expect(word(at + 8 + length) == Int(crc))
            let type = String(decoding: typeAndData.prefix(4), as: UTF8.self), data = Array(typeAndData.dropFirst(4))
            types.append(type)
            if type == "IHDR" {
                width = word(at + 8); height = word(at + 12)
                #expect(Array(data.suffix(5)) == [8, 2, 0, 0, 0])
            }
            if type == "IDAT" { idat += data }
            at += 12 + length
        }
        #expect(types == ["IHDR", "IDAT", "IEND"])
        let stride = width * 3
        var raw = [UInt8](repeating: 0, count: (stride + 1) * height)
        var size = uLongf(raw.count)
        let status = raw.withUnsafeMutableBufferPointer { out in
            idat.withUnsafeBufferPointer { uncompress(out.baseAddress, &size, $0.baseAddress, uLong($0.count)) }
        }
        #expect(status == Z_OK && Int(size) == raw.count)
        rgb = [UInt8](repeating: 0, count: stride * height)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            for i in 0..<stride {
                let x = Int(raw[y * (stride + 1) + 1 + i])
                let a = i >= 3 ? Int(rgb[y * stride + i - 3]) : 0
                let b = y > 0 ? Int(rgb[(y - 1) * stride + i]) : 0
                let c = i >= 3 && y > 0 ? Int(rgb[(y - 1) * stride + i - 3]) : 0
                let predictor = switch filter {
                case 0: 0
                case 1: a
                case 2: b
                case 3: (a + b) / 2
                default: PNGEncoder.paeth(a, b, c)
                }
                rgb[y * stride + i] = UInt8(truncatingIfNeeded: x + predictor)
            }
        }
    }
}

@Suite struct PNGEncoderTests {
    @Test(arguments: [(1, 1), (7, 3), (64, 48), (33, 64)])
    func pixelsSurviveTheRoundTrip(size: (width: Int, height: Int)) throws {
        var random = SplitMix(seed: UInt64(size.width * 100 + size.height))
        // Smooth gradients (the filters matter) with noise (the compressor must not lose any).
        let rgb = (0..<(size.width * size.height * 3)).map { i -> UInt8 in
            let pixel = i / 3, x = pixel % size.width, y = pixel / size.width
            return UInt8(truncatingIfNeeded: x * 3 + y * 2 + (i % 3) * 40 + Int(random.next() % 4))
        }
        let png = PNGEncoder.encode(rgb: rgb, width: size.width, height: size.height)
        let decoded = try DecodedPNG(png)
        #expect(decoded.width == size.width && decoded.height == size.height)
        #expect(decoded.rgb == rgb)
    }

    @Test func aFlatImageCompressesWell() {
        let rgb = [UInt8](repeating: 200, count: 64 * 64 * 3)
        #expect(PNGEncoder.encode(rgb: rgb, width: 64, height: 64).count < 200)
    }
}
