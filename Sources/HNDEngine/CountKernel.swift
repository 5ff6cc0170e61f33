import CHNDKernels

/// Stage II's per-map count (|M| and |M ∩ L| for each of the image's masks) as one call into the
/// C kernel (CHNDKernels), in AVX-512 or AVX2, straight from a candidate record. It computes what
/// `forEachBlockRun` and the engine's run overlap compute, with the same float operations in the
/// same order; the engine uses the Swift path on the portable path (no AVX2, or HNDD_PORTABLE),
/// and the tests compare them all.
final class CountKernel: @unchecked Sendable {
    /// Immutable after `init`; freed with the kernel.
    private let geometry: OpaquePointer
    private let rowBlocks: Int

    /// Whether this process counts with the kernel (its vector path is AVX-512 or AVX2).
    static let isAvailable = hndd_count_kernel_available() != 0

    /// For each image, which blocks each of its masks meets (`maskBlockWords` words): worked out
    /// once per layer rather than at every snapshot.
    private let maskBlocksOfImages: UnsafeMutablePointer<UInt64>
    private let maskBlockWords: Int

    /// The kernel for `upsampler`'s geometry and the masks of `spans`, or nil when the process
    /// does not count with it. `path`: count with that vector path's kernel instead of the
    /// process's (tests); nil when this CPU cannot run it.
    init?(_ upsampler: BilinearUpsampler, spans: ConceptSpans, path: hndd_path? = nil) {
        guard Self.isAvailable || path != nil else { return nil }
        func blocks(_ axis: BilinearUpsampler.Axis) -> [Int32] {
            axis.blocks.flatMap { [Int32($0.start), Int32($0.end), Int32($0.lower), Int32($0.upper)] }
        }
        func touching(_ axis: BilinearUpsampler.Axis) -> [Int32] {
            axis.blocksTouching.flatMap { [Int32($0.lowerBound), Int32($0.upperBound)] }
        }
        let rows = upsampler.rows, cols = upsampler.cols
        guard let geometry = hndd_geometry_create(
            Int32(upsampler.height), Int32(upsampler.width), Int32(upsampler.size),
            blocks(rows), Int32(rows.blocks.count), blocks(cols), Int32(cols.blocks.count),
            touching(rows), touching(cols),
            rows.lowerWeight, rows.upperWeight, cols.lowerWeight, cols.upperWeight) else { return nil }
        if let path, hndd_geometry_select(geometry, path) == 0 {
            hndd_geometry_free(geometry)
            return nil
        }
        let rowBlocks = rows.blocks.count
        let words = rows.blocks.count + cols.blocks.count, images = spans.maskStart.count - 1
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: max(images * words, 1))
        table.initialize(repeating: 0, count: max(images * words, 1))
        spans.masks.withUnsafeBufferPointer { masks in
            for image in 0..<images {
                let first = spans.maskStart[image], count = spans.maskStart[image + 1] - first
                guard count > 0 else { continue }
                let bits = table + image * words
                hndd_mask_blocks(geometry, masks.baseAddress! + first, Int64(count), bits, bits + rowBlocks)
            }
        }
        self.geometry = geometry
        self.rowBlocks = rowBlocks
        maskBlocksOfImages = table
        maskBlockWords = words
    }

    deinit {
        hndd_geometry_free(geometry)
        maskBlocksOfImages.deallocate()
    }

    /// The calls, on a value that holds no reference (so a loop of them counts none); valid while
    /// the kernel lives.
    var calls: Calls {
        Calls(geometry: geometry, rowBlocks: rowBlocks, maskBlockWords: maskBlockWords,
              maskBlocksOfImages: maskBlocksOfImages)
    }

    struct Calls: @unchecked Sendable { // pointers to immutable tables
        let geometry: OpaquePointer
        let rowBlocks: Int
        let maskBlockWords: Int
        let maskBlocksOfImages: UnsafePointer<UInt64>

        /// The blocks each mask of `image` meets, for `count`.
        @inline(__always) func maskBlocks(ofImage image: Int) -> UnsafePointer<UInt64> {
            maskBlocksOfImages + image * maskBlockWords
        }

        /// |M| of a map (`kept` position words and their `values`, as a candidate record holds
        /// them) at `threshold`; adds |M ∩ masks[m]| to `overlap[m]`. `maskBlocks`: the image's,
        /// from `maskBlocks(ofImage:)`.
        @inline(__always)
        func count(kept: UnsafeRawPointer, values: UnsafePointer<Float>, threshold: Float, masks: UnsafePointer<ConceptSpans.Mask>,
                   maskBlocks: UnsafePointer<UInt64>, runLo: UnsafePointer<UInt16>, runHi: UnsafePointer<UInt16>,
                   overlap: UnsafeMutablePointer<Int64>) -> Int {
            Int(hndd_count_map(geometry, kept, values, threshold, masks, maskBlocks, maskBlocks + rowBlocks, runLo, runHi, overlap))
        }
    }
}

/// The vector path of the engine's kernels in this process — "avx512", "avx2" or "portable" —
/// chosen once at load (hndd_cpu.h), for logs.
public enum EngineKernels {
    public static let path = String(cString: hndd_vector_path_name())
}
