/// Bilinear upsampling of an h×w map to S×S exactly as
/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`: half-pixel centres,
/// source coordinates clamped at 0, the upper neighbour clamped at the last row or column.
///
/// Output pixels fall into *blocks* that share the same four source corners. A bilinear value is
/// a convex combination of its corners, so a block whose corners all lie at or below a bound
/// cannot produce a value above it: the engine skips such blocks without computing them.
public struct BilinearUpsampler: Sendable {
    /// One axis: for each output index, the two source indices and their weights.
    public struct Axis: Sendable, Equatable {
        public let lower: [Int32]
        public let upper: [Int32]
        public let lowerWeight: [Float]
        public let upperWeight: [Float]
        /// Runs of consecutive output indices with the same (lower, upper) pair.
        public let blocks: [Block]

        public struct Block: Sendable, Equatable {
            public let start: Int, end: Int   // output indices, half-open
            public let lower: Int, upper: Int // source indices
        }

        public init(input: Int, output: Int) {
            precondition(input > 0 && output > 0)
            let scale = Float(input) / Float(output)
            var lower = [Int32](), upper = [Int32](), lw = [Float](), uw = [Float]()
            for o in 0..<output {
                let source = max((Float(o) + 0.5) * scale - 0.5, 0)
                let i0 = min(Int(source), input - 1)
                let i1 = min(i0 + 1, input - 1)
                let lambda1 = source - Float(i0)
                lower.append(Int32(i0)); upper.append(Int32(i1))
                lw.append(1 - lambda1); uw.append(lambda1)
            }
            var blocks = [Block]()
            var start = 0
            for o in 1...output where o == output || lower[o] != lower[start] || upper[o] != upper[start] {
                blocks.append(Block(start: start, end: o, lower: Int(lower[start]), upper: Int(upper[start])))
                start = o
            }
            self.lower = lower; self.upper = upper; lowerWeight = lw; upperWeight = uw
            self.blocks = blocks
        }
    }

    public let height: Int, width: Int, size: Int
    public let rows: Axis
    public let cols: Axis

    public init(height: Int, width: Int, size: Int) {
        self.height = height; self.width = width; self.size = size
        rows = Axis(input: height, output: size)
        cols = Axis(input: width, output: size)
    }

    /// The upsampled value at output (row, col) of `map` (h×w, row-major).
    @inlinable public func value(_ map: UnsafePointer<Float>, row: Int, col: Int) -> Float {
        let y0 = Int(rows.lower[row]), y1 = Int(rows.upper[row])
        let x0 = Int(cols.lower[col]), x1 = Int(cols.upper[col])
        let wy0 = rows.lowerWeight[row], wy1 = rows.upperWeight[row]
        let wx0 = cols.lowerWeight[col], wx1 = cols.upperWeight[col]
        let top = wx0 * map[y0 * width + x0] + wx1 * map[y0 * width + x1]
        let bottom = wx0 * map[y1 * width + x0] + wx1 * map[y1 * width + x1]
        return wy0 * top + wy1 * bottom
    }

    /// Calls `body(pixelIndex, value)` for every output pixel whose value exceeds `bound`,
    /// computing only the blocks — and within them the rows — that can exceed it.
    @inlinable public func forEachPixel(of map: UnsafePointer<Float>, above bound: Float,
                                        _ body: (Int, Float) -> Void) {
        rows.lowerWeight.withUnsafeBufferPointer { wy0s in
        rows.upperWeight.withUnsafeBufferPointer { wy1s in
        cols.lowerWeight.withUnsafeBufferPointer { wx0s in
        cols.upperWeight.withUnsafeBufferPointer { wx1s in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * size) { scratch in
            let tops = scratch.baseAddress!, bottoms = tops + size
            for colBlock in cols.blocks {
                let x0 = colBlock.lower, x1 = colBlock.upper
                let start = colBlock.start, width = colBlock.end - colBlock.start
                for rowBlock in rows.blocks {
                    let top = map + rowBlock.lower * self.width, bottom = map + rowBlock.upper * self.width
                    let a00 = top[x0], a01 = top[x1], a10 = bottom[x0], a11 = bottom[x1]
                    if max(max(a00, a01), max(a10, a11)) <= bound { continue }
                    // Interpolate along x once per block; each row is then one blend per pixel.
                    var topMax = -Float.infinity, bottomMax = -Float.infinity
                    for j in 0..<width {
                        let wx0 = wx0s[start + j], wx1 = wx1s[start + j]
                        let t = wx0 * a00 + wx1 * a01, b = wx0 * a10 + wx1 * a11
                        tops[j] = t; bottoms[j] = b
                        topMax = max(topMax, t); bottomMax = max(bottomMax, b)
                    }
                    for row in rowBlock.start..<rowBlock.end {
                        let wy0 = wy0s[row], wy1 = wy1s[row]
                        // Weights are non-negative: this bounds every value of the row.
                        if wy0 * topMax + wy1 * bottomMax <= bound { continue }
                        let base = row * size + start
                        for j in 0..<width {
                            let v = wy0 * tops[j] + wy1 * bottoms[j]
                            if v > bound { body(base + j, v) }
                        }
                    }
                }
            }
        }}}}}
    }
}
