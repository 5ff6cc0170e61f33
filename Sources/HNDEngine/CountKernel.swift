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

    /// The kernel's mask bits are one word: an image's masks (pieces) are counted in groups of
    /// at most 64. Image n's groups are `groupStart[n] ..< groupStart[n + 1]` (at least one, so
    /// that |M| is counted for an image without masks); group g holds its image's masks
    /// `64·(g − groupStart[n]) ..<` the next 64.
    static let groupSize = 64
    private let groupStart: UnsafeMutablePointer<Int>
    /// For each group, which blocks each of its masks meets (`maskBlockWords` words): worked out
    /// once per layer rather than at every snapshot.
    private let maskBlocksOfGroups: UnsafeMutablePointer<UInt64>
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
        let groupStart = UnsafeMutablePointer<Int>.allocate(capacity: images + 1)
        groupStart[0] = 0
        for image in 0..<images {
            let count = spans.maskStart[image + 1] - spans.maskStart[image]
            groupStart[image + 1] = groupStart[image] + max(1, (count + Self.groupSize - 1) / Self.groupSize)
        }
        let groups = groupStart[images]
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: max(groups * words, 1))
        table.initialize(repeating: 0, count: max(groups * words, 1))
        spans.masks.withUnsafeBufferPointer { masks in
            for image in 0..<images {
                let first = spans.maskStart[image], count = spans.maskStart[image + 1] - first
                for group in groupStart[image]..<groupStart[image + 1] {
                    let offset = (group - groupStart[image]) * Self.groupSize
                    guard count > offset else { continue }
                    let bits = table + group * words
                    hndd_mask_blocks(geometry, masks.baseAddress! + first + offset, Int64(min(Self.groupSize, count - offset)),
                                     bits, bits + rowBlocks)
                }
            }
        }
        self.geometry = geometry
        self.rowBlocks = rowBlocks
        self.groupStart = groupStart
        maskBlocksOfGroups = table
        maskBlockWords = words
    }

    deinit {
        hndd_geometry_free(geometry)
        groupStart.deallocate()
        maskBlocksOfGroups.deallocate()
    }

    /// The calls, on a value that holds no reference (so a loop of them counts none); valid while
    /// the kernel lives.
    var calls: Calls {
        Calls(geometry: geometry, rowBlocks: rowBlocks, maskBlockWords: maskBlockWords,
              groupStart: groupStart, maskBlocksOfGroups: maskBlocksOfGroups)
    }

    struct Calls: @unchecked Sendable { // pointers to immutable tables
        let geometry: OpaquePointer
        let rowBlocks: Int
        let maskBlockWords: Int
        let groupStart: UnsafePointer<Int>
        let maskBlocksOfGroups: UnsafePointer<UInt64>

        /// |M| of a map of `image` (`kept` position words and their `values`, floats or halves, as
        /// a candidate record holds them) at `threshold`; adds |M ∩ masks[m]| to `overlap[m]` for each of the
        /// image's masks, one kernel call per group of 64 (|M| is that of the first).
        @inline(__always)
        func count(kept: UnsafeRawPointer, values: UnsafeRawPointer, halfValues: Bool = false, threshold: Float, image: Int,
                   masks: UnsafePointer<ConceptSpans.Mask>, runLo: UnsafePointer<UInt16>, runHi: UnsafePointer<UInt16>,
                   overlap: UnsafeMutablePointer<Int64>) -> Int {
            let first = groupStart[image], half: Int32 = halfValues ? 1 : 0
            let bits = maskBlocksOfGroups + first * maskBlockWords
            let area = Int(hndd_count_map(geometry, kept, values, half, threshold, masks, bits, bits + rowBlocks, runLo, runHi, overlap))
            guard area > 0 else { return 0 }
            for group in (first + 1)..<groupStart[image + 1] {
                let offset = (group - first) * CountKernel.groupSize
                let bits = maskBlocksOfGroups + group * maskBlockWords
                _ = hndd_count_map(geometry, kept, values, half, threshold, masks + offset, bits, bits + rowBlocks, runLo, runHi, overlap + offset)
            }
            return area
        }
    }
}

/// The vector path of the engine's kernels in this process — "avx512", "avx2" or "portable" —
/// chosen once at load (hndd_cpu.h), for logs.
public enum EngineKernels {
    public static let path = String(cString: hndd_vector_path_name())
}
