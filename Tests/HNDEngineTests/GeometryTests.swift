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

    @Test func skippingBlocksLosesNoPixelAboveTheBound() {
        var generator = SplitMix(seed: 11)
        for (h, w, s) in [(7, 7, 112), (5, 9, 56), (3, 1, 10), (14, 14, 112)] {
            let up = BilinearUpsampler(height: h, width: w, size: s)
            let map = (0..<(h * w)).map { _ in generator.uniform() * 4 - 2 }
            for bound: Float in [-3, 0, 1, 1.9] {
                var seen: [Int: Float] = [:]
                map.withUnsafeBufferPointer { m in
                    up.forEachPixel(of: m.baseAddress!, above: bound) { seen[$0] = $1 }
                    for row in 0..<s {
                        for col in 0..<s {
                            let v = up.value(m.baseAddress!, row: row, col: col)
                            #expect((v > bound) == (seen[row * s + col] != nil))
                            if let got = seen[row * s + col] { #expect(got == v) }
                        }
                    }
                }
            }
        }
    }
}

@Suite struct TailHistogramTests {
    @Test func countsAboveAnyThresholdWithinABinWidth() {
        var generator = SplitMix(seed: 5)
        var histogram = TailHistogram(rows: 2)
        var values: [Float] = []
        for _ in 0..<20000 {
            let v = generator.uniform() * 6 - 1 // [-1, 5): both signs
            values.append(v)
            histogram.record(v, rows: v > 2 ? [0, 1] : [0])
        }
        for t: Float in [-0.5, 0, 0.001, 1, 2.5, 4.99] {
            let exact = Double(values.filter { $0 > t }.count)
            let got = histogram.countsAbove(t)
            // The error is at most the content of the threshold's bin, which spans < 2^-8 of t.
            let width = abs(t) / 256
            let binContent = Double(values.filter { abs($0 - t) <= width }.count)
            #expect(abs(got[0] - exact) <= binContent, "threshold \(t)")
            let exactAbove2 = Double(values.filter { $0 > max(t, 2) }.count)
            #expect(abs(got[1] - exactAbove2) <= binContent, "threshold \(t), row 1")
        }
    }

    @Test func discardKeepsEverythingAboveTheFloorAndMergeAdds() {
        var a = TailHistogram(rows: 1), b = TailHistogram(rows: 1)
        for v: Float in [0.1, 0.2, 1, 8, 9] { a.record(v, rows: [0]) }
        for v: Float in [0.3, 10] { b.record(v, rows: [0]) }
        a.discard(below: 0.9)
        #expect(a.countsAbove(0.9) == [3])
        a.merge(b)
        #expect(a.countsAbove(9.5) == [1])
        #expect(a.countsAbove(0.9) == [4])
        let restored = TailHistogram(rows: 1, pages: a.pages)
        #expect(restored == a)
    }
}
