import CHNDKernels
import HNDTestSupport
import Testing
@testable import HNDEngine

@Suite struct EllipseMaskTests {
    @Test func singularAndIndefiniteCovariancesGiveEmptyMasks() {
        // Collinear landmarks: det = 0.
        let singular = EllipseMask(cx: 0.5, cy: 0.5, sxx: 0.01, sxy: 0.01, syy: 0.01, chi2: 5.991, size: 16)
        #expect(singular.isEmpty && singular.area == 0)
        let negative = EllipseMask(cx: 0.5, cy: 0.5, sxx: -0.01, sxy: 0, syy: -0.01, chi2: 5.991, size: 16)
        #expect(negative.isEmpty && negative.area == 0)
    }

    @Test func circleByHand() {
        // σ² = 0.01 and χ² = 4 give radius 0.2: on a 10×10 grid, centres at 0.05, 0.15, …
        // Pixel (5, 5) has centre (0.55, 0.55), 0.0707 from (0.5, 0.5): inside. (5, 7) is at
        // distance 0.206: outside. (5, 6) at 0.158: inside.
        let m = EllipseMask(cx: 0.5, cy: 0.5, sxx: 0.01, sxy: 0, syy: 0.01, chi2: 4, size: 10)
        #expect(m.contains(row: 5, col: 5))
        #expect(m.contains(row: 5, col: 6))
        #expect(!m.contains(row: 5, col: 7))
        #expect(m.span(row: 5) == 3...6)
    }

    @Test func rowSpansEqualThePixelTest() {
        var generator = SplitMix(seed: 4)
        for _ in 0..<300 {
            let sxx = 0.0005 + generator.uniform() * 0.02, syy = 0.0005 + generator.uniform() * 0.02
            let sxy = (generator.uniform() * 2 - 1) * 0.95 * (sxx * syy).squareRoot()
            let m = EllipseMask(cx: generator.uniform() * 1.2 - 0.1, cy: generator.uniform() * 1.2 - 0.1,
                                sxx: sxx, sxy: sxy, syy: syy, chi2: 5.991, size: 37)
            var area = 0
            for row in 0..<37 {
                let expected = (0..<37).filter { m.contains(row: row, col: $0) }
                let span = m.span(row: row).map(Array.init) ?? []
                #expect(span == expected, "row \(row)")
                area += expected.count
            }
            #expect(m.area == area)
        }
    }
}

@Suite struct UpsamplerTests {
    @Test func matchesTorchOnATwoByTwo() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=4,
        // mode="bilinear", align_corners=False) = rows [1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
        // [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]: edges clamp, centres interpolate.
        let up = BilinearUpsampler(height: 2, width: 2, size: 4)
        let map: [Float] = [1, 2, 3, 4]
        let expected: [Float] = [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]
        map.withUnsafeBufferPointer { m in
            for i in 0..<16 { #expect(up.value(m.baseAddress!, row: i / 4, col: i % 4) == expected[i]) }
        }
    }

    /// The block runs against the per-pixel formula: every pixel above the threshold is in a
    /// run and every run pixel is above it, except a pixel within float rounding of it.
    @Test func blockRunsEqualThePixelTest() {
        var generator = SplitMix(seed: 11)
        for (h, w, s) in [(7, 7, 112), (5, 9, 56), (3, 1, 10), (14, 14, 112), (2, 2, 4), (1, 1, 37)] {
            let up = BilinearUpsampler(height: h, width: w, size: s)
            for trial in 0..<6 {
                // Smooth and rough maps, some with ties; kept values only near the hot ones (−∞
                // elsewhere, as the candidate store expands them) in the last trials.
                var map = (0..<(h * w)).map { _ in trial % 2 == 0 ? generator.uniform() * 4 - 2 : Float(Int(generator.next() % 5)) - 2 }
                for threshold: Float in [-3, -1, 0, 0.5, 1, 1.9, 2.5] {
                    if trial >= 4 {
                        map = map.enumerated().map { p, v in
                            let (y, x) = (p / w, p % w)
                            var near = false
                            for ny in max(y - 1, 0)...min(y + 1, h - 1) {
                                for nx in max(x - 1, 0)...min(x + 1, w - 1) where map[ny * w + nx] > threshold { near = true }
                            }
                            return near ? v : -.infinity
                        }
                    }
                    var inRun = [Bool](repeating: false, count: s * s)
                    map.withUnsafeBufferPointer { m in
                        up.forEachBlockRun(of: m.baseAddress!, above: threshold) { firstRow, rowCount, lo, hi, columns in
                            for lane in 0..<rowCount where hi[lane] > lo[lane] {
                                #expect(Int(lo[lane]) >= columns.lowerBound && Int(hi[lane]) <= columns.upperBound)
                                for col in Int(lo[lane])..<Int(hi[lane]) {
                                    #expect(!inRun[(firstRow + lane) * s + col], "pixel counted twice")
                                    inRun[(firstRow + lane) * s + col] = true
                                }
                            }
                        }
                        var mismatches = 0, above = 0
                        for row in 0..<s {
                            for col in 0..<s {
                                let v = up.value(m.baseAddress!, row: row, col: col)
                                if v > threshold { above += 1 }
                                if (v > threshold) != inRun[row * s + col] {
                                    mismatches += 1
                                    #expect(abs(v - threshold) <= 1e-5 * max(1, abs(threshold)), "\(h)×\(w)→\(s) t=\(threshold) (\(row), \(col)) = \(v)")
                                }
                            }
                        }
                        #expect(mismatches <= max(1, above / 1000))
                    }
                }
            }
        }
    }
}

/// The ways a store can keep its values on this CPU: floats, and halves where the vector path
/// converts them.
let valueLayouts = CandidateMaps.keepsHalves ? [false, true] : [false]

@Suite struct CandidateMapsTests {
    @Test func keepsTheNeighbourhoodsOfValuesAboveTheBound() {
        var store = CandidateMaps(height: 4, width: 5)
        // Row-major 4×5; values above 1 at (0, 4) and (3, 0): their 3×3 neighbourhoods are kept.
        let map: [Float] = [0, 0.1, 0.2, 0.3, 5,
                            0.4, 0.5, 0.6, 0.7, 0.8,
                            0.9, 0.25, 0.35, 0.45, 0.55,
                            7, 0.65, 0.75, 0.85, 0.95]
        var scratch: [UInt64] = [0]
        map.withUnsafeBufferPointer { m in
            store.append(unit: 3, image: 9, peak: 7, map: m.baseAddress!, bound: 1, scratch: &scratch[0])
            store.append(unit: 1, image: 2, peak: 0.5, map: m.baseAddress!, bound: 1, scratch: &scratch[0]) // not kept
        }
        #expect(store.count == 1 && store.units == [3] && store.images == [9] && store.peaks == [7])
        var dense = [Float](repeating: 0, count: 20)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        let kept: Set<Int> = [3, 4, 8, 9, 10, 11, 15, 16]
        for p in 0..<20 { #expect(dense[p] == (kept.contains(p) ? map[p] : -.infinity), "position \(p)") }
    }

    @Test func aRisenBoundShedsValuesNoLongerNeeded() {
        var store = CandidateMaps(height: 1, width: 12)
        // Hot values at 1, 5, 7 and 10; once the bound passes all but the largest, only its
        // neighbourhood stays.
        var map = [Float](repeating: 0, count: 12)
        map[1] = 2; map[10] = 5; map[5] = 1.5; map[7] = 1.2
        var scratch: [UInt64] = [0]
        map.withUnsafeBufferPointer { store.append(unit: 0, image: 4, peak: 5, map: $0.baseAddress!, bound: 1, scratch: &scratch[0]) }
        var dense = [Float](repeating: 0, count: 12)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11])
        let bounds: [Float] = [3]
        store.discard(bounds: bounds)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [9, 10, 11])
        #expect(dense[10] == 5 && dense[9] == 0)
    }

    @Test func aRisenBoundShedsValuesOfWiderMapsToo() {
        // 9×9, two words: hot values at (1, 1) and (7, 7), two whole neighbourhoods; the bound
        // passes the first.
        var store = CandidateMaps(height: 9, width: 9)
        var map = [Float](repeating: 0, count: 81)
        map[10] = 2; map[70] = 5
        var scratch: [UInt64] = [0, 0]
        map.withUnsafeBufferPointer { m in
            scratch.withUnsafeMutableBufferPointer { store.append(unit: 0, image: 4, peak: 5, map: m.baseAddress!, bound: 1, scratch: $0.baseAddress!) }
        }
        // A second map after it, which must survive the first one's rewrite intact.
        map[10] = 0; map[70] = 0; map[40] = 4
        map.withUnsafeBufferPointer { m in
            scratch.withUnsafeMutableBufferPointer { store.append(unit: 0, image: 5, peak: 4, map: m.baseAddress!, bound: 1, scratch: $0.baseAddress!) }
        }
        let bounds: [Float] = [3]
        store.discard(bounds: bounds)
        var dense = [Float](repeating: 0, count: 81)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [60, 61, 62, 69, 70, 71, 78, 79, 80] && dense[70] == 5)
        dense.withUnsafeMutableBufferPointer { store.expand(1, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [30, 31, 32, 39, 40, 41, 48, 49, 50] && dense[40] == 4)
        #expect(store.images == [4, 5])
    }

    @Test(arguments: valueLayouts)
    func aBoundBelowEveryKeptPeakShedsNothing(halves: Bool) {
        // 1×20, hot values 2, 3, 4, 5, 6 at 1, 5, 9, 13, 17: fifteen values kept. Shedding starts
        // only once the bound reaches 2, the smallest of them.
        var store = CandidateMaps(height: 1, width: 20, halfValues: halves)
        let shed = CandidateMaps.valueBytes(15, halves: halves) - CandidateMaps.valueBytes(12, halves: halves)
        var map = [Float](repeating: 0, count: 20)
        for (i, p) in [1, 5, 9, 13, 17].enumerated() { map[p] = Float(2 + i) }
        var scratch: [UInt64] = [0]
        map.withUnsafeBufferPointer { store.append(unit: 0, image: 4, peak: 6, map: $0.baseAddress!, bound: 1, scratch: &scratch[0]) }
        let full = store.bytes
        store.discard(bounds: [1.9])
        #expect(store.bytes == full)
        store.discard(bounds: [2])
        #expect(store.bytes == full - shed && store.halfValues == halves)
        var dense = [Float](repeating: 0, count: 20)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18])
        // The rewritten record sheds again once the bound reaches its smallest value above.
        store.discard(bounds: [2.9])
        #expect(store.bytes == full - shed)
        store.discard(bounds: [3.5])
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [8, 9, 10, 12, 13, 14, 16, 17, 18] && dense[17] == 6)
    }

    @Test func widerMapsUseSeveralWords() {
        var store = CandidateMaps(height: 9, width: 9) // 81 positions: two words
        var map = [Float](repeating: 0, count: 81)
        map[80] = 3; map[0] = 2
        var scratch: [UInt64] = [0, 0]
        map.withUnsafeBufferPointer { m in
            scratch.withUnsafeMutableBufferPointer { store.append(unit: 0, image: 0, peak: 3, map: m.baseAddress!, bound: 1, scratch: $0.baseAddress!) }
        }
        var dense = [Float](repeating: 0, count: 81)
        dense.withUnsafeMutableBufferPointer { store.expand(0, into: $0.baseAddress!) }
        let kept: Set<Int> = [0, 1, 9, 10, 70, 71, 79, 80]
        for p in 0..<81 { #expect(dense[p] == (kept.contains(p) ? map[p] : -.infinity), "position \(p)") }
    }

    @Test(arguments: valueLayouts)
    func aRecordOfAWideMapStoresOnlyTheWordsWithKeptPositions(halves: Bool) throws {
        // 14×14: 196 positions, four words. A hot value at (1, 1) keeps positions 0–2, 14–16 and
        // 28–30, all in word 0; one at (9, 5) keeps 116–118 (word 1), 130–132 and 144–146 (word 2).
        var store = CandidateMaps(height: 14, width: 14, halfValues: halves)
        let nineValues = halves ? 9 * 2 + 2 : 9 * 4 // bytes, halves padded to 4
        var map = [Float](repeating: 0.5, count: 196)
        map[15] = 2
        var scratch = [UInt64](repeating: 0, count: 4)
        func append(image: Int32, peak: Float) {
            map.withUnsafeBufferPointer { m in
                scratch.withUnsafeMutableBufferPointer {
                    store.append(unit: 1, image: image, peak: peak, map: m.baseAddress!, bound: 1, scratch: $0.baseAddress!)
                }
            }
        }
        append(image: 3, peak: 2)
        // Header, presence mask, one word, nine values.
        #expect(store.bytes == 16 + 4 + 8 + nineValues)
        map[15] = 0.5; map[131] = 3
        append(image: 4, peak: 3)
        #expect(store.bytes == (16 + 4 + 8 + nineValues) + (16 + 4 + 2 * 8 + nineValues))
        var dense = [Float](repeating: 0, count: 196)
        dense.withUnsafeMutableBufferPointer { store.expand(1, into: $0.baseAddress!) }
        #expect(dense.indices.filter { dense[$0] > -.infinity } == [116, 117, 118, 130, 131, 132, 144, 145, 146] && dense[131] == 3)
        // The checkpoint's columns hold every word, absent ones as zeros; restored, the records
        // are as compact and keep the same values.
        var writer = ByteWriter()
        CandidateMaps.encode([store], into: &writer)
        var reader = ByteReader(writer.bytes)
        #expect(try reader.getArray(Int32.self) == [1, 1] && reader.getArray(Int32.self) == [3, 4])
        _ = try reader.getArray(Float.self)
        func word(_ j: Int, of positions: [Int]) -> UInt64 {
            positions.filter { $0 >> 6 == j }.reduce(0) { $0 | 1 << UInt64($1 & 63) }
        }
        let first = [0, 1, 2, 14, 15, 16, 28, 29, 30], second = [116, 117, 118, 130, 131, 132, 144, 145, 146]
        #expect(try reader.getArray(UInt64.self) == [word(0, of: first), 0, 0, 0, 0, word(1, of: second), word(2, of: second), 0])
        reader = ByteReader(writer.bytes)
        let restored = try CandidateMaps.decode(from: &reader, height: 14, width: 14, storeCount: 1, store: { _ in 0 }) { _, _ in true }
        // A restored store starts with halves where it can, as a new one does.
        #expect(restored[0].halfValues == CandidateMaps.keepsHalves && restored[0].widened().bytes == store.widened().bytes)
        var again = [Float](repeating: 0, count: 196)
        again.withUnsafeMutableBufferPointer { restored[0].expand(1, into: $0.baseAddress!) }
        #expect(again == dense)
    }

    /// Halves until a value that is not one: then floats, the same as a store that kept floats
    /// all along, byte for byte.
    @Test(.enabled(if: CandidateMaps.keepsHalves, "the portable path keeps floats"))
    func aStoreOfHalvesWidensAtItsFirstValueThatIsNotAHalf() {
        var halves = CandidateMaps(height: 3, width: 3), floats = CandidateMaps(height: 3, width: 3, halfValues: false)
        var scratch: [UInt64] = [0]
        func append(_ map: [Float], image: Int32) {
            map.withUnsafeBufferPointer { m in
                halves.append(unit: 0, image: image, peak: map.max()!, map: m.baseAddress!, bound: 1, scratch: &scratch[0])
                floats.append(unit: 0, image: image, peak: map.max()!, map: m.baseAddress!, bound: 1, scratch: &scratch[0])
            }
        }
        append([0, 0.5, 0.25, 1.5, 2, -3, 0.125, 1024, 65504], image: 0) // all halves, all kept
        #expect(halves.halfValues && halves.bytes == 16 + 8 + 20 && floats.bytes == 16 + 8 + 36)
        append([0, 0, 0, 0, 6e-8, 0, 0, 0, 3], image: 1) // a half subnormal (the nearest to 6e-8 is not it)
        #expect(!halves.halfValues)
        #expect(halves == floats && halves.bytes == floats.bytes && halves.arena.bytesEqual(floats.arena))
        append([0, 0, 0, 0, 2, 0, 0, 0, 0], image: 2) // floats from now on, even for halves
        #expect(!halves.halfValues && halves.arena.bytesEqual(floats.arena) && halves.count == 3)
    }

    /// Copying records between stores that keep their values differently: widened, narrowed when
    /// nothing is lost, else the receiving store widens.
    @Test(.enabled(if: CandidateMaps.keepsHalves, "the portable path keeps floats"))
    func copiesBetweenStoresOfHalvesAndOfFloats() {
        var scratch: [UInt64] = [0]
        func store(halves: Bool, _ maps: [[Float]]) -> CandidateMaps {
            var store = CandidateMaps(height: 2, width: 2, halfValues: halves)
            for (i, map) in maps.enumerated() {
                map.withUnsafeBufferPointer { store.append(unit: i, image: Int32(i), peak: map.max()!, map: $0.baseAddress!, bound: 0, scratch: &scratch[0]) }
            }
            return store
        }
        let exact: [[Float]] = [[1, 2, 0.5, 4], [3, 0, 0, 1]], inexact: [[Float]] = [[1, 2, 0.1, 4]]
        func copies(_ from: CandidateMaps, into: CandidateMaps) -> CandidateMaps {
            var into = into
            from.forEach { into.appendCopy(of: $0) }
            return into
        }
        let narrowed = copies(store(halves: false, exact), into: CandidateMaps(height: 2, width: 2))
        #expect(narrowed.halfValues && narrowed == store(halves: true, exact) && narrowed.arena.bytesEqual(store(halves: true, exact).arena))
        let widened = copies(store(halves: true, exact), into: CandidateMaps(height: 2, width: 2, halfValues: false))
        #expect(!widened.halfValues && widened.arena.bytesEqual(store(halves: false, exact).arena))
        let forced = copies(store(halves: false, inexact), into: store(halves: true, exact))
        let expected = copies(store(halves: false, inexact), into: store(halves: false, exact))
        #expect(!forced.halfValues && forced.arena.bytesEqual(expected.arena) && forced.count == 3)
    }

    @Test func discardDropsMapsThatCanNoLongerCrossAndStateRoundTrips() throws {
        var store = CandidateMaps(height: 2, width: 2)
        var scratch: [UInt64] = [0]
        for (unit, peak) in [(0, Float(1)), (1, 2), (0, 3), (1, 0.5)] {
            let map: [Float] = [peak, 0, 0, peak / 2]
            map.withUnsafeBufferPointer { store.append(unit: unit, image: Int32(unit), peak: peak, map: $0.baseAddress!, bound: -.infinity, scratch: &scratch[0]) }
        }
        #expect(store.count == 4)
        let bounds: [Float] = [1, 0.75]
        store.discard(bounds: bounds)
        #expect(store.peaks == [2, 3])
        var dense = [Float](repeating: 0, count: 4)
        dense.withUnsafeMutableBufferPointer { store.expand(1, into: $0.baseAddress!) }
        #expect(dense == [3, 0, 0, 1.5])
        var writer = ByteWriter()
        CandidateMaps.encode([store], into: &writer)
        var reader = ByteReader(writer.bytes)
        let restored = try CandidateMaps.decode(from: &reader, height: 2, width: 2, storeCount: 1, store: { _ in 0 }) { _, _ in true }
        #expect(restored == [store])
        // Split by unit into two stores, and refused when a map names what the state cannot have.
        reader = ByteReader(writer.bytes)
        let split = try CandidateMaps.decode(from: &reader, height: 2, width: 2, storeCount: 2, store: { Int($0) }) { _, _ in true }
        #expect(split.map(\.units) == [[0], [1]] && split.map(\.peaks) == [[3], [2]])
        reader = ByteReader(writer.bytes)
        #expect(throws: StateError.self) {
            try CandidateMaps.decode(from: &reader, height: 2, width: 2, storeCount: 1, store: { _ in 0 }) { unit, _ in unit == 0 }
        }
    }
}

@Suite struct IngestKernelTests {
    /// Each vector path's maxima, above-bound scan and gather (the process's, and AVX2's called
    /// directly where the CPU has it) equal the plain C ones, at sizes around the 8- and 16-lane
    /// and 64-bit boundaries.
    @Test(arguments: [1, 7, 8, 9, 15, 16, 17, 24, 49, 63, 64, 65, 196])
    func vectorAndPortableScansAgree(size n: Int) {
        var g = SplitMix(seed: UInt64(n))
        let maps = (0..<(5 * n)).map { _ in g.uniform() * 4 - 2 }
        for scans in VectorScans.runnable {
            var vector = [Float](repeating: 0, count: 5), portable = [Float](repeating: 0, count: 5)
            #expect(scans.maxima(maps, 5, Int32(n), &vector) == 1 && hndd_maxima_portable(maps, 5, Int32(n), &portable) == 1)
            #expect(vector == portable, "\(scans.name)")
            #expect(vector[4] == maps[(4 * n)...].max())
            // A NaN or an infinity anywhere, the first and last positions included, is reported.
            for bad in [Float.nan, .infinity, -.infinity] {
                for at in [0, 5 * n - 1] {
                    var broken = maps
                    broken[at] = bad
                    #expect(scans.maxima(broken, 5, Int32(n), &vector) == 0 && hndd_maxima_portable(broken, 5, Int32(n), &portable) == 0,
                            "\(scans.name): \(bad) at \(at)")
                }
            }
            let words = (n + 63) / 64
            for bound: Float in [-3, 0.5, 1.9, 3] {
                var outV = [Float](repeating: 0, count: n), outP = [Float](repeating: 0, count: n)
                var bitsV = [UInt64](repeating: ~0, count: words), bitsP = [UInt64](repeating: ~0, count: words)
                let countV = scans.above(maps, Int32(n), bound, &outV, &bitsV)
                let countP = hndd_above_portable(maps, Int32(n), bound, &outP, &bitsP)
                let expected = maps[..<n].filter { $0 > bound }
                #expect(countV == countP && Int(countV) == expected.count, "\(scans.name)")
                #expect(Array(outV[..<expected.count]) == expected && Array(outP[..<expected.count]) == expected, "\(scans.name)")
                #expect(bitsV == bitsP && bitsV.map(\.nonzeroBitCount).reduce(0, +) == expected.count, "\(scans.name)")
                var bitsOnly = [UInt64](repeating: ~0, count: words)
                #expect(scans.above(maps, Int32(n), bound, nil, &bitsOnly) == countV && bitsOnly == bitsV)
                // Gathering those positions back, with the smallest above a bound, into exactly
                // the room they need: the guard value after them stays.
                var gatheredV = [Float](repeating: 0, count: expected.count + 1), gatheredP = [Float](repeating: 0, count: n)
                gatheredV[expected.count] = 42
                let smallestV = scans.gather(maps, Int32(n), bitsV, 1, &gatheredV)
                let smallestP = hndd_gather_portable(maps, Int32(n), bitsV, 1, &gatheredP)
                #expect(Array(gatheredV[..<expected.count]) == expected && Array(gatheredP[..<expected.count]) == expected, "\(scans.name)")
                #expect(gatheredV[expected.count] == 42, "\(scans.name) wrote past the gathered values")
                #expect(smallestV == smallestP && smallestV == (expected.filter { $0 > 1 }.min() ?? .infinity), "\(scans.name)")
            }
        }
    }
}

@Suite struct KeepLargestTests {
    /// Every path's partitions keep exactly the k largest (as a multiset) and return the k-th
    /// largest, with ties at the boundary and across sizes around the vector widths.
    @Test(arguments: [1, 2, 7, 8, 9, 17, 100, 4099])
    func keepsTheLargest(count n: Int) {
        var g = SplitMix(seed: UInt64(n) + 11)
        // Few distinct values: ties everywhere.
        let values = (0..<n).map { _ in Float(Int(g.uniform() * 7)) - 2 }
        let sorted = values.sorted(by: >)
        for k in Set([1, n / 3 + 1, n / 2 + 1, n]) {
            var portable = values
            var spare = [Float](repeating: 0, count: n)
            let kthP = hndd_keep_largest_portable(&portable, Int64(n), Int64(k), &spare)
            #expect(kthP == sorted[k - 1])
            #expect(portable[..<k].sorted(by: >) == Array(sorted[..<k]) && portable.sorted(by: >) == sorted)
            for scans in VectorScans.runnable {
                var vector = values
                let kthV = scans.keepLargest(&vector, Int64(n), Int64(k), &spare)
                #expect(kthV == sorted[k - 1], "\(scans.name)")
                #expect(vector[..<k].sorted(by: >) == Array(sorted[..<k]), "\(scans.name)")
                #expect(vector.sorted(by: >) == sorted, "\(scans.name): the values are rearranged, none lost")
            }
        }
    }
}
