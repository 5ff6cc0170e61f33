@testable import HNDEngine

/// Raster masks of every awkward shape, drawn around a dictionary's ellipses: what the published
/// Face Dictionary has (bilateral pairs) and what a raster may hold beyond it.
enum RasterShapes {
    /// Concept c's shape, by c mod 5: two ellipses (a bilateral concept), a ring (a hole), three
    /// blobs in a row (rows with three runs), a band or frame on the grid's edge (the four edges
    /// in turn, then all of them), the ellipse itself (empty on every 11th image: an empty
    /// present mask). Every image n with n mod 13 = 6 has every present concept drawn as stripes
    /// one pixel apart (S/2 runs a row: more than 64 pieces on the image once S ≥ 28).
    static func bitmap(_ d: FaceDictionary, image n: Int, concept c: Int) -> [Bool] {
        let s = d.maskSize
        var pixels = [Bool](repeating: false, count: s * s)
        guard d.localLabel(image: n, concept: c) == 1 else { return pixels }
        let e = (n * d.conceptCount + c) * 5
        let cx = Double(d.ellipse[e]), cy = Double(d.ellipse[e + 1])
        let sxx = Double(d.ellipse[e + 2]), sxy = Double(d.ellipse[e + 3]), syy = Double(d.ellipse[e + 4])
        func inside(_ row: Int, _ col: Int, dx: Double, scale: Double) -> Bool {
            let x = (Double(col) + 0.5) / Double(s) - cx - dx, y = (Double(row) + 0.5) / Double(s) - cy
            let a = sxx * scale, b = sxy * scale, cc = syy * scale
            return (cc * x * x - 2 * b * x * y + a * y * y) / (a * cc - b * b) <= 5.991
        }
        for row in 0..<s {
            for col in 0..<s {
                let set: Bool
                if n % 13 == 6 {
                    set = (col + row % 2) % 2 == 0
                } else {
                    switch c % 5 {
                    case 0: set = inside(row, col, dx: -0.13, scale: 0.35) || inside(row, col, dx: 0.13, scale: 0.35)
                    case 1: set = inside(row, col, dx: 0, scale: 1.6) && !inside(row, col, dx: 0, scale: 0.5)
                    case 2: set = [-0.16, 0, 0.16].contains { inside(row, col, dx: $0, scale: 0.15) }
                    case 3:
                        let band = max(2, s / 10)
                        switch n % 5 {
                        case 0: set = col < band
                        case 1: set = row < band
                        case 2: set = col >= s - band
                        case 3: set = row >= s - band
                        default: set = row < band || col < band || row >= s - band || col >= s - band
                        }
                    default: set = n % 11 != 0 && inside(row, col, dx: 0, scale: 1)
                    }
                }
                pixels[row * s + col] = set
            }
        }
        return pixels
    }

    /// `d` as a version-2 dictionary with these rasters.
    static func drawn(over d: FaceDictionary) -> FaceDictionary {
        var bitmaps: [Bool] = []
        for n in 0..<d.imageCount {
            for c in 0..<d.conceptCount { bitmaps += bitmap(d, image: n, concept: c) }
        }
        var v2 = d
        v2.version = 2
        v2.rasters = MaskRasters(size: d.maskSize, conceptCount: d.conceptCount, bitmaps: bitmaps)
        return v2
    }

    /// Packs a bitmap's rows as docs/1-dictionary.md stores them (numpy `packbits`, big bit order).
    static func packed(_ bitmap: [Bool], size s: Int) -> [UInt8] {
        let rowBytes = (s + 7) / 8
        var bytes = [UInt8](repeating: 0, count: s * rowBytes)
        for row in 0..<s {
            for col in 0..<s where bitmap[row * s + col] { bytes[row * rowBytes + col / 8] |= 0x80 >> UInt8(col % 8) }
        }
        return bytes
    }
}
