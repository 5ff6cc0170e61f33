import Dispatch
import Foundation
import HNDEngine

/// `/images/masks` of a version-2 dictionary (docs/1-dictionary.md): [N, L, S, ⌈S/8⌉] uint8, each mask row
/// bit-packed. Read in blocks of images — chunk by chunk, inflated on every core, where the
/// dataset is deflated (`DeflatedChunks`), else through HDF5 hyperslabs — and each block turned
/// into runs on every core: the dense array (1.5 GB of bits at the paper's size, twelve times
/// that unpacked) is never in memory.
enum MaskFile {
    static let dataset = "/images/masks"
    /// Images per read, at least: about 7 MB at the paper's size. Reads are whole chunks of the
    /// dataset, so that no chunk is decompressed twice, and a chunk per core where the chunks are
    /// inflated here.
    static let imagesPerBlock = 128
    /// Chunks of more images than this are left to HDF5 (a block would hold them whole).
    static let largestChunk = 1024

    /// `direct`: inflate the chunks here where the dataset allows it (tests compare both ways).
    static func read(_ file: HDF5File, images n: Int, concepts: [String], size s: Int,
                     sources: [String]?, direct: Bool = true) throws(StoreError) -> MaskRasters {
        let l = concepts.count, rowBytes = (s + 7) / 8
        let shape = try file.shape(of: dataset)
        guard shape == [n, l, s, rowBytes] else {
            throw file.error(dataset, "shape \(shape), expected [\(n), \(l), \(s), \(rowBytes)] (images × local concepts × mask_size rows × ⌈mask_size/8⌉ bytes)")
        }
        guard try file.isUnsignedInteger(dataset), try file.elementSize(of: dataset) == 1 else {
            throw file.error(dataset, "expected uint8 values (bit-packed mask rows)")
        }
        let chunkImages = max(1, try file.chunkShape(of: dataset)?.first ?? 1)
        let chunks = direct && chunkImages <= largestChunk ? DeflatedChunks(file, dataset) : nil
        let chunksPerBlock = max((imagesPerBlock + chunkImages - 1) / chunkImages,
                                 chunks == nil ? 1 : ProcessInfo.processInfo.activeProcessorCount)
        let block = chunkImages > largestChunk ? imagesPerBlock : min(chunksPerBlock, max(1, largestChunk / chunkImages)) * chunkImages

        var rasters = MaskRasters(size: s, conceptCount: l), bytes: [UInt8] = []
        for start in stride(from: 0, to: n, by: block) {
            let count = min(block, n - start)
            var unstored = [Bool](repeating: false, count: count)
            if let chunks {
                unstored = try chunks.read(start: start, count: count, into: &bytes, file: file)
            } else {
                try file.readRows(dataset, start: start, count: count, into: &bytes)
            }
            for part in convert(bytes, first: start, images: count, unstored: unstored, concepts: l, size: s) {
                switch part {
                case .success(let runs): rasters.append(runs)
                case .failure(let bad):
                    throw file.error(dataset, "\(FaceDictionary.imageName(bad.image, sources: sources)), concept \(bad.concept) (\(concepts[bad.concept])): padding bits (past column \(s - 1) in a row's last byte) are set; they must be 0")
                }
            }
        }
        return rasters
    }

    /// The runs of a block of packed masks (images `first ..< first + images`), in slices of
    /// images on every core, in order. `unstored` images have no stored chunk: empty, not looked at.
    static func convert(_ bytes: [UInt8], first: Int, images: Int, unstored: [Bool], concepts l: Int,
                        size s: Int) -> [Result<MaskRasters, BadPadding>] {
        let slices = min(images, 2 * ProcessInfo.processInfo.activeProcessorCount), maskBytes = s * ((s + 7) / 8)
        var parts = [Result<MaskRasters, BadPadding>](repeating: .success(MaskRasters(size: s, conceptCount: l)), count: slices)
        bytes.withUnsafeBufferPointer { bytes in
        parts.withUnsafeMutableBufferPointer { parts in
            let bytes = UnsafeSendable(bytes), parts = UnsafeSendable(parts)
            DispatchQueue.concurrentPerform(iterations: slices) { slice in
                var part = MaskRasters(size: s, conceptCount: l)
                parts.value[slice] = {
                    for i in (slice * images / slices)..<((slice + 1) * images / slices) {
                        if unstored[i] {
                            for _ in 0..<l { part.appendMask(EmptyCollection()) }
                            continue
                        }
                        for c in 0..<l where !part.appendPacked(bytes.value.baseAddress! + (i * l + c) * maskBytes) {
                            return .failure(BadPadding(image: first + i, concept: c))
                        }
                    }
                    part.shrinkToFit() // it is kept for as long as the dictionary
                    return .success(part)
                }()
            }
        }}
        return parts
    }

    struct BadPadding: Error { let image: Int, concept: Int }
}
