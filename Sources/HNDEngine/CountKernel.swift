import CHNDKernels

/// Stage II's per-map count (|M| and |M ∩ L| for each of the image's masks) as one call into the
/// C kernel (CHNDKernels), on CPUs with AVX-512, straight from a candidate record. It computes
/// what `forEachBlockRun` and the engine's run overlap compute, with the same float operations in
/// the same order; the engine uses the Swift path where the CPU lacks AVX-512, and the tests
/// compare the two.
final class CountKernel: @unchecked Sendable {
    /// Immutable after `init`; freed with the kernel.
    private let geometry: OpaquePointer
    private let rowBlocks: Int

    /// Whether this CPU runs the kernel.
    static let isAvailable = hndd_count_kernel_available() != 0

    /// The kernel for `upsampler`'s geometry, or nil when the CPU cannot run it.
    init?(_ upsampler: BilinearUpsampler) {
        guard Self.isAvailable else { return nil }
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
        self.geometry = geometry
        rowBlocks = rows.blocks.count
    }

    deinit { hndd_geometry_free(geometry) }

    /// The calls, on a value that holds no reference (so a loop of them counts none); valid while
    /// the kernel lives.
    var calls: Calls { Calls(geometry: geometry, rowBlocks: rowBlocks) }

    struct Calls: @unchecked Sendable { // a pointer to immutable tables
        let geometry: OpaquePointer
        let rowBlocks: Int

        /// Words of `maskBlocks` scratch: one per row block and one per column block.
        var maskBlockWords: Int { rowBlocks + Int(hndd_geometry_col_blocks(geometry)) }

        /// Fills `bits` (`maskBlockWords`) with the blocks each of an image's masks meets; computed
        /// once per image, used by `count` for each of its maps.
        @inline(__always)
        func maskBlocks(masks: UnsafePointer<ConceptSpans.Mask>, maskCount: Int, into bits: UnsafeMutablePointer<UInt64>) {
            hndd_mask_blocks(geometry, masks, Int64(maskCount), bits, bits + rowBlocks)
        }

        /// |M| of a map (`kept` position words and their `values`, as a candidate record holds
        /// them) at `threshold`; adds |M ∩ masks[m]| to `overlap[m]`. `maskBlocks`: filled by
        /// `maskBlocks(masks:…)` for these masks.
        @inline(__always)
        func count(kept: UnsafeRawPointer, values: UnsafePointer<Float>, threshold: Float, masks: UnsafePointer<ConceptSpans.Mask>,
                   maskBlocks: UnsafePointer<UInt64>, runLo: UnsafePointer<UInt16>, runHi: UnsafePointer<UInt16>,
                   overlap: UnsafeMutablePointer<Int64>) -> Int {
            Int(hndd_count_map(geometry, kept, values, threshold, masks, maskBlocks, maskBlocks + rowBlocks, runLo, runHi, overlap))
        }
    }
}
