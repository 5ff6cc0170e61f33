import Dispatch
import Foundation
import HNDEngine

/// `/images/masks` of a version-2 dictionary (SPEC §1): [N, L, S, ⌈S/8⌉] uint8, each mask row
/// bit-packed. Read in blocks of images — chunk by chunk, inflated on every core, where the
/// dataset is deflated (`DeflatedChunks`), else through HDF5 hyperslabs — and turned into runs
/// block by block, the next block being read while the last is converted: the dense array
/// (1.5 GB of bits at the paper's size, twelve times that unpacked) is never in memory.
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

        var rasters = MaskRasters(size: s, conceptCount: l)
        let buffers = [Block(), Block()]
        let converted = DispatchGroup()
        func take(_ block: Block) throws(StoreError) {
            switch block.result {
            case .none: return
            case .success(let part)?: rasters.append(part)
            case .failure(let bad)?:
                throw file.error(dataset, "\(FaceDictionary.imageName(bad.image, sources: sources)), concept \(bad.concept) (\(concepts[bad.concept])): padding bits (past column \(s - 1) in a row's last byte) are set; they must be 0")
            }
            block.result = nil
        }
        for (k, start) in stride(from: 0, to: n, by: block).enumerated() {
            let next = buffers[k % 2], count = min(block, n - start)
            if let chunks {
                next.unstored = try chunks.read(start: start, count: count, into: &next.bytes, file: file)
            } else {
                try file.readRows(dataset, start: start, count: count, into: &next.bytes)
                next.unstored = [Bool](repeating: false, count: count)
            }
            converted.wait()
            try take(buffers[(k + 1) % 2])
            next.first = start
            DispatchQueue.global().async(group: converted) { next.convert(images: count, concepts: l, size: s) }
        }
        converted.wait()
        for last in buffers { try take(last) } // only the last block's runs are still to take
        return rasters
    }

    /// A block of packed masks and the runs made of them. Used by one thread at a time: the
    /// reader fills it, then a worker converts it, and the reader takes the runs after waiting.
    final class Block: @unchecked Sendable {
        var bytes: [UInt8] = []
        /// Per image, whether no chunk of it is stored (its masks are empty, not worth a look).
        var unstored: [Bool] = []
        var first = 0
        var result: Result<MaskRasters, BadPadding>?

        func convert(images: Int, concepts l: Int, size s: Int) {
            var part = MaskRasters(size: s, conceptCount: l)
            let maskBytes = s * ((s + 7) / 8)
            result = bytes.withUnsafeBufferPointer { bytes in
                for i in 0..<images {
                    if unstored[i] {
                        for _ in 0..<l { part.appendMask(EmptyCollection()) }
                        continue
                    }
                    for c in 0..<l where !part.appendPacked(bytes.baseAddress! + (i * l + c) * maskBytes) {
                        return .failure(BadPadding(image: first + i, concept: c))
                    }
                }
                part.shrinkToFit() // it is kept for as long as the dictionary
                return .success(part)
            }
        }
    }

    struct BadPadding: Error { let image: Int, concept: Int }
}
