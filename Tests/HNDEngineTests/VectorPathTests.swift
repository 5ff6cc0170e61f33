import HNDTestSupport
import CHNDCPU
import CHNDKernels
import Foundation
import Testing
@testable import HNDEngine

/// One vector path's scans, as the tests call them: the process's own (whichever path it chose)
/// and AVX2's, called directly where the CPU has AVX2 — so that one test process on an AVX-512
/// machine compares all three paths.
struct VectorScans {
    let name: String
    let maxima: (UnsafePointer<Float>?, Int64, Int32, UnsafeMutablePointer<Float>?) -> Int32
    let above: (UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<UInt64>?) -> Int32
    let gather: (UnsafePointer<Float>?, Int32, UnsafePointer<UInt64>?, Float, UnsafeMutablePointer<Float>?) -> Float
    let keepLargest: (UnsafeMutablePointer<Float>?, Int64, Int64, UnsafeMutablePointer<Float>?) -> Float

    static var runnable: [VectorScans] {
        var all = [VectorScans(name: "the process's (\(EngineKernels.path))", maxima: hndd_maxima, above: hndd_above,
                               gather: hndd_gather, keepLargest: hndd_keep_largest)]
        if hndd_cpu_supports(HNDD_PATH_AVX2) != 0 {
            all.append(VectorScans(name: "avx2", maxima: hndd_maxima_avx2, above: hndd_above_avx2,
                                   gather: hndd_gather_avx2, keepLargest: hndd_keep_largest_avx2))
        }
        return all
    }
}

/// The vector paths whose count kernel this CPU can run, each selectable whatever the process chose.
let runnableCountPaths = [HNDD_PATH_AVX512, HNDD_PATH_AVX2].filter { hndd_cpu_supports($0) != 0 }

@Suite struct VectorPathTests {
    /// The process runs the fastest path its CPU has, unless the environment rules paths out
    /// (`tools/test` runs the engine tests once per path that way).
    @Test func thePathFollowsTheCPUAndTheEnvironment() {
        let environment = ProcessInfo.processInfo.environment
        let expected: String
        if environment["HNDD_PORTABLE"] != nil {
            expected = "portable"
        } else if environment["HNDD_NO_AVX512"] == nil && hndd_cpu_supports(HNDD_PATH_AVX512) != 0 {
            expected = "avx512"
        } else if hndd_cpu_supports(HNDD_PATH_AVX2) != 0 {
            expected = "avx2"
        } else {
            expected = "portable"
        }
        #expect(EngineKernels.path == expected)
        #expect(CountKernel.isAvailable == (expected != "portable"))
        // AVX-512 CPUs have AVX2 too; the portable path always runs.
        if hndd_cpu_supports(HNDD_PATH_AVX512) != 0 { #expect(hndd_cpu_supports(HNDD_PATH_AVX2) != 0) }
        #expect(hndd_cpu_supports(HNDD_PATH_PORTABLE) == 1)
    }

    @Test func aCountKernelForAPathThisCPUCannotRunIsRefused() {
        let random = RandomCase(images: 10, units: 1, h: 3, w: 3, seed: 1, maskSize: 12)
        let index = DictionaryIndex(random.dictionary)
        let up = BilinearUpsampler(height: 3, width: 3, size: 12)
        #expect(CountKernel(up, spans: index.spans, path: HNDD_PATH_PORTABLE) == nil)
        for path in runnableCountPaths { #expect(CountKernel(up, spans: index.spans, path: path) != nil) }
    }
}

@Suite struct CountKernelTests {
    /// Each vector path's count of whole maps equals the Swift count at thresholds that *are*
    /// pixel values at the blocks' end columns (where a row's run starts or stops): there a
    /// different rounding — a fused multiply-add, say — moves a pixel across the threshold.
    @Test(.enabled(if: !runnableCountPaths.isEmpty, "no count kernel runs on this CPU (no AVX2)"),
          arguments: [(7, 7, 112), (14, 14, 112), (5, 9, 37), (3, 3, 24)])
    func countsAtThresholdsOnPixelValuesEqualTheSwiftCount(h: Int, w: Int, size: Int) {
        let random = RandomCase(images: 30, units: 1, h: h, w: w, seed: UInt64(h * 10 + w), maskSize: size)
        let index = DictionaryIndex(random.dictionary), spans = index.spans
        let up = BilinearUpsampler(height: h, width: w, size: size)
        let kept = [UInt64](repeating: 0, count: (h * w + 63) / 64).enumerated().map { j, _ in
            h * w - 64 * j >= 64 ? ~UInt64(0) : (UInt64(1) << UInt64(h * w - 64 * j)) - 1
        }
        var g = SplitMix(seed: 3)
        var chunks: [BlockRunChunk] = []
        var compared = 0, counted = 0
        for path in runnableCountPaths {
            let kernel = CountKernel(up, spans: spans, path: path)!, calls = kernel.calls
            spans.masks.withUnsafeBufferPointer { masks in
            spans.runLo.withUnsafeBufferPointer { runLo in
            spans.runHi.withUnsafeBufferPointer { runHi in
                for image in 0..<30 where index.inLocalSet[image] {
                    let map = Array(random.maps[(image * h * w)..<((image + 1) * h * w)])
                    let first = spans.maskStart[image], maskCount = spans.maskStart[image + 1] - first
                    map.withUnsafeBufferPointer { m in
                        for _ in 0..<12 {
                            let row = Int(g.next() % UInt64(size)), block = up.cols.blocks[Int(g.next() % UInt64(up.cols.blocks.count))]
                            let col = g.next() % 2 == 0 ? block.start : block.end - 1
                            let t = up.value(m.baseAddress!, row: row, col: col)
                            var swiftOverlap = [Int64](repeating: 0, count: maskCount), kernelOverlap = swiftOverlap
                            let swift = LayerAccumulator.countBlockRuns(
                                of: m.baseAddress!, above: t, upsampler: up, masks: masks.baseAddress! + first, maskCount: maskCount,
                                runLo: runLo, runHi: runHi, overlap: &swiftOverlap, chunks: &chunks)
                            let area = kept.withUnsafeBytes { words in
                                calls.count(kept: words.baseAddress!, values: m.baseAddress!, threshold: t, image: image,
                                            masks: masks.baseAddress! + first, runLo: runLo.baseAddress!,
                                            runHi: runHi.baseAddress!, overlap: &kernelOverlap)
                            }
                            #expect(area == swift && kernelOverlap == swiftOverlap, "path \(path.rawValue), image \(image), t = \(t)")
                            compared += 1
                            if swift > 0 { counted += 1 }
                        }
                    }
                }
            }}}
        }
        #expect(compared > 0 && counted > compared / 4, "the thresholds cut through the maps")
    }
}
