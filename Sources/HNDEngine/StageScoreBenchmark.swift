import COpenBLAS
import Dispatch

/// `hndd bench-stages`: Stage I's and Stage III's scores as the engine computes them (per-unit
/// loops over the images) against a weights matrix and one BLAS product per category or region
/// — rank-weighted maxima W [C×N] times the 0/1 label matrix [N×S] (Stage I) or presence
/// [N×K_r] (Stage III) — on synthetic maxima over a real dictionary's image sets. Measures the
/// score part alone and the whole stage, and how far the products' sums are from the loops'
/// (docs/performance.md records the figures and the decision).
public enum StageScoreBenchmark {
    /// One timed step, in seconds (the best of `repeats`).
    public struct Timing: Sendable { public let name: String; public let seconds: Double }

    /// How a product's sums compare with the engine's: entries compared (those not 0 both ways:
    /// a unit's sums outside its region are), entries bit-identical, the largest relative
    /// difference, and snapshot values (Float P and the flags; Stage I only) that differ.
    public struct Agreement: Sendable {
        public let name: String
        public var entries = 0, identical = 0
        public var probabilitiesDiffering: Int?
        public var maxRelative = 0.0
    }

    public struct Report: Sendable {
        public var timings: [Timing] = []
        public var agreements: [Agreement] = []
    }

    /// Times both ways for `units` units of synthetic maxima (a ReLU-like mix: 40 % zeros,
    /// hence ties) over every image of `index`.
    public static func run(index: DictionaryIndex, units: Int, seed: UInt64, repeats: Int = 3) -> Report {
        let layer = syntheticLayer(index: index, units: units, seed: seed)
        let maxima = SharedRows<Float>(repeating: 0, count: layer.maxima.count)
        _ = maxima.pointer.update(fromContentsOf: layer.maxima)
        var report = Report()
        StageOneBench(layer: layer, maxima: maxima, repeats: repeats).run(into: &report)
        StageThreeBench(layer: layer, maxima: maxima, repeats: repeats).run(into: &report)
        return report
    }

    /// A layer whose maxima are set directly (no maps: Stage I and III read only the maxima),
    /// every image seen.
    static func syntheticLayer(index: DictionaryIndex, units: Int, seed: UInt64) -> LayerAccumulator {
        var layer = LayerAccumulator(layer: "bench", index: index)
        let n = index.imageCount
        var random = PermutationRandom(seed: seed)
        layer.units = units
        layer.height = 1
        layer.width = 1
        layer.maxima = (0..<(units * n)).map { _ in
            let r = random.next()
            return r % 10 < 4 ? 0 : Float(r >> 40) / Float(1 << 24)
        }
        layer.seen = [Bool](repeating: true, count: n)
        layer.imagesSeen = n
        layer.localImagesSeen = index.inLocalSet.filter { $0 }.count
        return layer
    }

    /// The best of `repeats` runs of `body`, in seconds.
    static func time(_ repeats: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let started = ContinuousClock.now
            body()
            let elapsed = ContinuousClock.now - started
            best = min(best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        return best
    }

    /// Compares `sums` (a product's) with `reference` (the loops'), entry by entry.
    static func agreement(_ name: String, _ sums: [Double], _ reference: [Double]) -> Agreement {
        var a = Agreement(name: name)
        for (x, y) in zip(sums, reference) where x != 0 || y != 0 {
            a.entries += 1
            if x.bitPattern == y.bitPattern { a.identical += 1 }
            let scale = max(abs(x), abs(y))
            if scale > 0 { a.maxRelative = max(a.maxRelative, abs(x - y) / scale) }
        }
        return a
    }

    /// Runs `body(u)` for every unit on all cores, as a snapshot does.
    static func perUnit(_ units: Int, _ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: units, execute: body)
    }
}

/// A results array the units of `perUnit` fill, each its own rows.
final class SharedRows<T>: @unchecked Sendable { // units write disjoint rows
    let pointer: UnsafeMutableBufferPointer<T>
    init(repeating value: T, count: Int) {
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: value)
    }
    deinit { pointer.deallocate() }
    var array: [T] { Array(pointer) }
}

/// A fresh snapshot's buffers for `layer` (nothing tested).
func benchBuffers(_ layer: LayerAccumulator) -> SnapshotBuffers {
    let d = layer.index.dictionary
    let snap = LayerSnapshot(layer: layer.layer, imagesSeen: layer.imagesSeen, imagesTotal: layer.index.imageCount,
                             units: layer.units, subgroupCount: d.subgroupCount, conceptCount: d.conceptCount, topImageCount: 0)
    return SnapshotBuffers(snap, raw: RawPValues(global: [], local: []), nullSets: nil)
}

extension SnapshotBuffers {
    /// Frees the buffers, returning the snapshot they held.
    func finished(_ layer: LayerAccumulator) -> LayerSnapshot {
        let d = layer.index.dictionary
        var snap = LayerSnapshot(layer: layer.layer, imagesSeen: layer.imagesSeen, imagesTotal: layer.index.imageCount,
                                 units: layer.units, subgroupCount: d.subgroupCount, conceptCount: d.conceptCount, topImageCount: 0)
        var raw = RawPValues(global: [], local: [])
        finish(into: &snap, raw: &raw)
        return snap
    }
}

/// Matrix products in the precision of the element type: C = A [m×k] · B [k×n], row-major
/// (OpenBLAS with its own threads).
protocol GemmScalar: BinaryFloatingPoint {
    static func gemm(_ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ c: UnsafeMutablePointer<Self>, m: Int, k: Int, n: Int)
}

extension Double: GemmScalar {
    static func gemm(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ c: UnsafeMutablePointer<Double>, m: Int, k: Int, n: Int) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }
}

extension Float: GemmScalar {
    static func gemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, k: Int, n: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }
}
