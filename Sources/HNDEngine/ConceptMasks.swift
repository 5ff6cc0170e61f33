import Foundation

/// The mask of one present local concept (docs/1-dictionary.md): the pixels of the S×S grid whose centres lie
/// inside the concept's χ² ellipse. An ellipse is convex, so each grid row holds one run of
/// pixels; it is found from the quadratic's roots and its ends are re-checked with the exact
/// per-pixel test, so the mask equals the pixel-by-pixel definition.
public struct EllipseMask: Sendable {
    public let centerX, centerY: Double
    public let sxx, sxy, syy: Double
    public let chi2: Double
    public let size: Int
    /// sxx·syy − sxy²; the ellipse is empty unless the covariance is positive definite.
    public let determinant: Double

    public init(cx: Float, cy: Float, sxx: Float, sxy: Float, syy: Float, chi2: Double, size: Int) {
        centerX = Double(cx); centerY = Double(cy)
        self.sxx = Double(sxx); self.sxy = Double(sxy); self.syy = Double(syy)
        self.chi2 = chi2
        self.size = size
        determinant = self.sxx * self.syy - self.sxy * self.sxy
    }

    /// A singular (or not positive-definite) covariance gives an empty mask.
    public var isEmpty: Bool { !(determinant > 0) || !(sxx > 0) }

    /// The exact test of docs/1-dictionary.md for pixel (row, col); the order of operations is fixed so that
    /// every implementation computing it in float64 agrees bit for bit.
    @inlinable public func contains(row: Int, col: Int) -> Bool {
        let s = Double(size)
        let dx = (Double(col) + 0.5) / s - centerX
        let dy = (Double(row) + 0.5) / s - centerY
        let d = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / determinant
        return d <= chi2
    }

    /// The inclusive column range of `row` inside the mask, or nil.
    public func span(row: Int) -> ClosedRange<Int>? {
        if isEmpty { return nil }
        let s = Double(size)
        let dy = (Double(row) + 0.5) / s - centerY
        // syy·dx² − 2·sxy·dy·dx + (sxx·dy² − χ²·det) ≤ 0
        let a = syy, b = -2 * sxy * dy, c = sxx * dy * dy - chi2 * determinant
        let discriminant = b * b - 4 * a * c
        var lo: Int, hi: Int
        if discriminant >= 0 {
            let root = discriminant.squareRoot()
            let dxLo = (-b - root) / (2 * a), dxHi = (-b + root) / (2 * a)
            lo = Int(max(-1, min(s, ((centerX + dxLo) * s - 0.5).rounded(.up))))
            hi = Int(max(-1, min(s, ((centerX + dxHi) * s - 0.5).rounded(.down))))
        } else {
            // Rounding can leave a tangent row with one pixel; try the column nearest the apex.
            let apex = Int(max(-1, min(s, ((centerX - b / (2 * a)) * s - 0.5).rounded())))
            lo = apex; hi = apex
        }
        lo = max(lo, 0); hi = min(hi, size - 1)
        // Re-check both ends with the exact test: shrink, then grow.
        while lo <= hi, !contains(row: row, col: lo) { lo += 1 }
        while hi >= lo, !contains(row: row, col: hi) { hi -= 1 }
        if lo > hi { return nil }
        while lo > 0, contains(row: row, col: lo - 1) { lo -= 1 }
        while hi < size - 1, contains(row: row, col: hi + 1) { hi += 1 }
        return lo...hi
    }

    /// The inclusive row range that can intersect the ellipse (a cheap outer bound).
    public var candidateRows: ClosedRange<Int>? {
        if isEmpty { return nil }
        let s = Double(size)
        // The ellipse's vertical half-extent is sqrt(χ²·syy).
        let half = (chi2 * syy).squareRoot()
        let lo = Int(max(0, ((centerY - half) * s - 0.5).rounded(.down) - 1))
        let hi = Int(min(s - 1, ((centerY + half) * s - 0.5).rounded(.up) + 1))
        return lo <= hi ? lo...hi : nil
    }

    /// Number of pixels in the mask.
    public var area: Int {
        guard let rows = candidateRows else { return 0 }
        var total = 0
        for row in rows { if let span = span(row: row) { total += span.count } }
        return total
    }
}

extension FaceDictionary {
    /// The ellipse of concept `c` on image `n` as a mask, or nil when the concept is not present
    /// there (or the ellipses were not kept). It is the concept's mask unless the dictionary has
    /// rasters.
    public func ellipseMask(image n: Int, concept c: Int) -> EllipseMask? {
        guard localLabel(image: n, concept: c) == 1, !ellipse.isEmpty else { return nil }
        let e = (n * concepts.count + c) * 5
        return EllipseMask(cx: ellipse[e], cy: ellipse[e + 1], sxx: ellipse[e + 2],
                           sxy: ellipse[e + 3], syy: ellipse[e + 4], chi2: ellipseChi2, size: maskSize)
    }

    /// The mask of concept `c` on image `n` as its runs of pixels, by row then column: the
    /// raster's when the dictionary has rasters, else the ellipse's (one run per row); empty
    /// when the concept is not present.
    public func maskRuns(image n: Int, concept c: Int) -> [MaskRasters.Run] {
        if let rasters { return Array(rasters.runs(image: n, concept: c)) }
        var runs: [MaskRasters.Run] = []
        ellipseRuns(image: n, concept: c, into: &runs)
        return runs
    }

    /// The ellipse's mask of concept `c` on image `n` as its runs (one per row), into `runs`.
    func ellipseRuns(image n: Int, concept c: Int, into runs: inout [MaskRasters.Run]) {
        runs.removeAll(keepingCapacity: true)
        guard let mask = ellipseMask(image: n, concept: c), let rows = mask.candidateRows else { return }
        for row in rows {
            if let span = mask.span(row: row) { runs.append(MaskRasters.Run(row: row, lo: span.lowerBound, hi: span.upperBound + 1)) }
        }
    }
}
