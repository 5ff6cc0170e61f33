import CHDF5
import Foundation
import Testing
@testable import HNDEngine
@testable import HNDStore

/// A version-2 dictionary of `n` images, three concepts and S = 20: random shapes (several runs a
/// row, the grid's edges) where a concept is present, one present concept left empty.
func rasterDictionary(images n: Int, seed: UInt64 = 1) -> (FaceDictionary, bitmaps: [Bool]) {
    var state = seed
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    let s = 20, l = 3
    var local: [Int8] = [], global: [Int32] = [], bitmaps: [Bool] = []
    for image in 0..<n {
        global.append(Int32(next() % 2))
        for c in 0..<l {
            let label: Int8 = image % 4 == 3 ? -1 : Int8(next() % 2)
            local.append(label)
            let empty = image == 5 && c == 0
            for _ in 0..<(s * s) { bitmaps.append(label == 1 && !empty && next() % 3 == 0) }
        }
    }
    let d = FaceDictionary(
        categories: ["gender"], subgroups: ["female", "male"], subgroupCategory: [0, 0],
        regions: ["eye"], concepts: ["left_eye", "eyeglasses", "AU12"], conceptRegion: [0, 0, 0], conceptType: [0, 1, 2],
        globalLabel: global, localLabel: local, ellipse: [Float](repeating: .nan, count: n * l * 5), maskSize: s,
        version: 2, rasters: MaskRasters(size: s, conceptCount: l, bitmaps: bitmaps),
        imageSources: (0..<n).map { "set/\($0).png" })
    return (d, bitmaps)
}

/// The packed [N, L, S, ⌈S/8⌉] masks of docs/1-dictionary.md.
func packedMasks(_ bitmaps: [Bool], size s: Int) -> [UInt8] {
    let rowBytes = (s + 7) / 8
    var bytes = [UInt8](repeating: 0, count: bitmaps.count / s * rowBytes)
    for (i, set) in bitmaps.enumerated() where set {
        let row = i / s, col = i % s
        bytes[row * rowBytes + col / 8] |= 0x80 >> UInt8(col % 8)
    }
    return bytes
}

/// Writes a v2 dictionary; the masks chunked one image a chunk and compressed (as `growable`
/// datasets are), unless `contiguous`.
func writeRasterDictionary(_ d: FaceDictionary, bitmaps: [Bool], to path: String, contiguous: Bool = false, sources: [String]? = nil,
                           change: (inout [UInt8]) -> Void = { _ in }, mutate: (HDF5File) throws -> Void = { _ in }) throws {
    try writeDictionary(d, to: path) { file in
        try file.setAttribute("version", Int32(2))
        var masks = packedMasks(bitmaps, size: d.maskSize)
        change(&masks)
        try file.createDataset("/images/masks", shape: [d.imageCount, d.conceptCount, d.maskSize, (d.maskSize + 7) / 8],
                               values: masks, growable: !contiguous)
        try file.createStrings("/images/source", sources ?? d.imageSources!)
        try mutate(file)
    }
}

@Suite struct RasterStoreTests {
    /// 300 images: three blocks of 128 (the last partial), read while the previous one is
    /// converted; chunked and compressed, or contiguous.
    @Test(arguments: [false, true])
    func aVersionTwoFileLoadsInBlocks(contiguous: Bool) throws {
        let (d, bitmaps) = rasterDictionary(images: 300)
        let path = temporaryDirectory() + "/v2.h5"
        try writeRasterDictionary(d, bitmaps: bitmaps, to: path, contiguous: contiguous)
        let file = try HDF5File.open(path)
        #expect(try file.chunkShape(of: "/images/masks") == (contiguous ? nil : [1, 3, 20, 3]))
        let loaded = try DictionaryFile.load(path)
        #expect(loaded.version == 2 && loaded.imageSources == d.imageSources)
        #expect(loaded.rasters == d.rasters)
        #expect(loaded.rasters!.imageCount == 300 && loaded.rasters!.runCount > 1000)
        // Ellipses (all NaN here) are only informative when rasters are present: not kept.
        #expect(loaded.ellipse.isEmpty)
        let report = DictionaryReport(DictionaryIndex(loaded)).text(source: path)
        #expect(report.contains("version 2") && report.contains("image 5 (set/5.png): left_eye"))
    }

    /// The masks inflated here, chunk by chunk on every core, equal HDF5's own reading: chunks
    /// cut across concepts and rows, a last chunk past the images, chunks never written (zeros),
    /// shuffled and not, blocks of many chunks.
    @Test(arguments: [([4, 2, 7, 3], true), ([1, 3, 20, 3], false), ([64, 3, 20, 3], false), ([7, 1, 20, 2], true)])
    func inflatingChunksHereEqualsHDF5(chunks: [Int], shuffle: Bool) throws {
        let (d, bitmaps) = rasterDictionary(images: 300, seed: 4)
        let path = temporaryDirectory() + "/chunked.h5"
        try writeDictionary(d, to: path) { file in
            try file.setAttribute("version", Int32(2))
            try file.createChunkedDataset("/images/masks", shape: [300, 3, 20, 3], chunks: chunks, as: UInt8.self, deflate: 4, shuffle: shuffle)
            let masks = packedMasks(bitmaps, size: 20), image = 3 * 60
            // Images 100 ..< 164 are never written: their chunks (those wholly inside) are not stored.
            let missing = 100..<164
            var written = masks
            for n in missing { written.replaceSubrange((n * image)..<((n + 1) * image), with: repeatElement(0, count: image)) }
            try file.writeRows("/images/masks", start: 0, values: Array(written[..<(missing.lowerBound * image)]))
            try file.writeRows("/images/masks", start: missing.upperBound, values: Array(written[(missing.upperBound * image)...]))
            try file.createStrings("/images/source", d.imageSources!)
        }
        var expected = d
        expected.rasters = MaskRasters(size: 20, conceptCount: 3, bitmaps: (0..<bitmaps.count).map { i in
            i / 1200 >= 100 && i / 1200 < 164 ? false : bitmaps[i]
        })
        let file = try HDF5File.open(path)
        #expect(DeflatedChunks(file, "/images/masks") != nil)
        let here = try MaskFile.read(file, images: 300, concepts: d.concepts, size: 20, sources: nil)
        let hdf5 = try MaskFile.read(file, images: 300, concepts: d.concepts, size: 20, sources: nil, direct: false)
        #expect(here == hdf5)
        #expect(here == expected.rasters)
    }

    /// The Adler-32 that folds in zero runs equals zlib's, and inflating checks it: a stream with
    /// a flipped bit never inflates to other bytes, one with a wrong checksum is refused.
    @Test func inflatingChecksTheStream() {
        var state: UInt64 = 3
        for count in [0, 1, 63, 64, 65, 1000, 4096, 100_003] {
            // Zero runs of every length between non-zero stretches, at every alignment.
            var data = [UInt8](repeating: 0, count: count)
            var i = 0
            while i < count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let length = Int(state >> 54) % 300
                if state & 1 == 0 { for k in i..<min(count, i + length) { data[k] = UInt8(truncatingIfNeeded: state >> (8 + k % 40)) | 1 } }
                i += length + 1
            }
            let zlib = data.withUnsafeBufferPointer { UInt32(adler32(1, $0.baseAddress, uInt(count))) }
            #expect(data.withUnsafeBytes { DeflatedChunks.adler32($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: count) } == zlib, "\(count) bytes")
            guard count > 0 else { continue }
            var compressed = [UInt8](repeating: 0, count: Int(compressBound(uLong(count))))
            var length = uLongf(compressed.count)
            #expect(compress2(&compressed, &length, data, uLong(count), 4) == Z_OK)
            compressed.removeSubrange(Int(length)...)
            var out = [UInt8](repeating: 0, count: count)
            func inflates(_ stream: [UInt8]) -> Bool {
                stream.withUnsafeBytes { s in out.withUnsafeMutableBytes { DeflatedChunks.inflate(s.baseAddress!, count: stream.count, into: $0.baseAddress!, count: count) } }
            }
            #expect(inflates(compressed) && out == data)
            for position in [2, compressed.count / 2, compressed.count - 1] where position >= 2 {
                var broken = compressed
                broken[position] ^= 0x10
                // Refused, or (a padding bit after the last code) the same bytes: never other bytes.
                #expect(!inflates(broken) || out == data, "a flipped bit at \(position) of \(compressed.count)")
            }
            var checksum = compressed
            checksum[checksum.count - 2] ^= 1
            #expect(!inflates(checksum))
        }
    }

    func expectError(_ path: String, object: String, _ message: String) {
        #expect(throws: StoreError(file: path, object: object, message: message)) { _ = try DictionaryFile.load(path) }
    }

    @Test func strayBitsNameTheImageAndConcept() throws {
        let (d, bitmaps) = rasterDictionary(images: 40)
        let dir = temporaryDirectory()
        for label: Int8 in [0, -1] {
            let i = d.localLabel.firstIndex(of: label)!
            let (n, c) = (i / 3, i % 3)
            var stray = bitmaps
            stray[i * 400 + 19] = true // row 0, last column
            try writeRasterDictionary(d, bitmaps: stray, to: dir + "/stray\(label).h5")
            expectError(dir + "/stray\(label).h5", object: "/images/masks",
                        "image \(n) (set/\(n).png), concept \(c) (\(d.concepts[c])): 1 pixel set where local_label is \(label); only a present concept (label 1) may have mask pixels")
        }
    }

    @Test func paddingShapeTypeAndVersionAreChecked() throws {
        let (d, bitmaps) = rasterDictionary(images: 200)
        let dir = temporaryDirectory()
        // Image 150, concept 2, row 4: a padding bit (column 20 of 24) set.
        try writeRasterDictionary(d, bitmaps: bitmaps, to: dir + "/padding.h5") { masks in masks[((150 * 3 + 2) * 20 + 4) * 3 + 2] |= 0x08 }
        expectError(dir + "/padding.h5", object: "/images/masks",
                    "image 150 (set/150.png), concept 2 (AU12): padding bits (past column 19 in a row's last byte) are set; they must be 0")
        let shape = dir + "/shape.h5"
        try writeDictionary(d, to: shape) { file in
            try file.setAttribute("version", Int32(2))
            try file.createDataset("/images/masks", shape: [200, 3, 20, 20], values: [UInt8](repeating: 0, count: 200 * 3 * 400))
        }
        expectError(shape, object: "/images/masks", "shape [200, 3, 20, 20], expected [200, 3, 20, 3] (images × local concepts × mask_size rows × ⌈mask_size/8⌉ bytes)")
        let signed = dir + "/signed.h5"
        try writeDictionary(d, to: signed) { file in
            try file.setAttribute("version", Int32(2))
            try file.createDataset("/images/masks", shape: [200, 3, 20, 3], values: [Int8](repeating: 0, count: 200 * 3 * 60))
        }
        expectError(signed, object: "/images/masks", "expected uint8 values (bit-packed mask rows)")
        try writeRasterDictionary(d, bitmaps: bitmaps, to: dir + "/v1.h5", mutate: { try $0.setAttribute("version", Int32(1)) })
        expectError(dir + "/v1.h5", object: "/images/masks", "raster masks in a version 1 file; they need version = 2 (docs/1-dictionary.md)")
        try writeRasterDictionary(d, bitmaps: bitmaps, to: dir + "/v3.h5", mutate: { try $0.setAttribute("version", Int32(3)) })
        expectError(dir + "/v3.h5", object: "/ (attribute version)", "is 3; this hndd reads versions 1 and 2 of docs/1-dictionary.md")
        try writeRasterDictionary(d, bitmaps: bitmaps, to: dir + "/source.h5", sources: ["a"])
        expectError(dir + "/source.h5", object: "/images/source", "holds 1 names, expected 200 (one per image)")
    }
}
