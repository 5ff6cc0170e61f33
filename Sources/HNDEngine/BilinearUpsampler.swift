/// Bilinear upsampling of an h×w map to S×S exactly as
/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`: half-pixel centres,
/// source coordinates clamped at 0, the upper neighbour clamped at the last row or column.
///
/// Output pixels fall into *blocks* that share the same four source corners. A bilinear value is
/// a convex combination of its corners, so a block whose corners all lie at or below a threshold
/// cannot produce a value above it: the engine skips such blocks without computing them.
public struct BilinearUpsampler: Sendable {
    /// One axis: for each output index, the two source indices and their weights.
    public struct Axis: Sendable, Equatable {
        public let lower: [Int32]
        public let upper: [Int32]
        public let lowerWeight: [Float]
        public let upperWeight: [Float]
        /// Runs of consecutive output indices with the same (lower, upper) pair and weights
        /// affine in the index.
        public let blocks: [Block]
        /// The weights followed by `lanes` zeros, so that a vector load at any output index
        /// stays in bounds.
        let paddedLowerWeight: [Float]
        let paddedUpperWeight: [Float]
        /// For each source index, the blocks using it as their lower or upper index.
        let blocksTouching: [Range<Int>]

        public struct Block: Sendable, Equatable {
            public let start: Int, end: Int   // output indices, half-open
            public let lower: Int, upper: Int // source indices
        }

        public init(input: Int, output: Int) {
            precondition(input > 0 && output > 0)
            let scale = Float(input) / Float(output)
            var lower = [Int32](), upper = [Int32](), lw = [Float](), uw = [Float]()
            var clamped = [Bool]()
            for o in 0..<output {
                let unclamped = (Float(o) + 0.5) * scale - 0.5
                clamped.append(unclamped < 0)
                let source = max(unclamped, 0)
                let i0 = min(Int(source), input - 1)
                let i1 = min(i0 + 1, input - 1)
                let lambda1 = source - Float(i0)
                lower.append(Int32(i0)); upper.append(Int32(i1))
                lw.append(1 - lambda1); uw.append(lambda1)
            }
            var blocks = [Block]()
            var start = 0
            // A block's weights are affine in the output index: the outputs clamped at the first
            // source index (weight 0 throughout) get a block of their own.
            for o in 1...output where o == output || lower[o] != lower[start] || upper[o] != upper[start] || clamped[o] != clamped[start] {
                blocks.append(Block(start: start, end: o, lower: Int(lower[start]), upper: Int(upper[start])))
                start = o
            }
            self.lower = lower; self.upper = upper; lowerWeight = lw; upperWeight = uw
            self.blocks = blocks
            blocksTouching = (0..<input).map { i in
                let touching = blocks.indices.filter { blocks[$0].lower == i || blocks[$0].upper == i }
                return (touching.first ?? 0)..<((touching.last ?? -1) + 1)
            }
            paddedLowerWeight = lw + [Float](repeating: 0, count: BilinearUpsampler.lanes)
            paddedUpperWeight = uw + [Float](repeating: 0, count: BilinearUpsampler.lanes)
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

    /// Rows of a block are handled this many at a time.
    public static let lanes = 16
    public typealias Lanes = SIMD16<Float>

    /// Calls `body(firstRow, rowCount, lo, hi, columns)` for every block that has a corner above
    /// `threshold` (in chunks of at most 16 rows): lane i describes output row firstRow + i, whose
    /// pixels above the threshold within the block are the columns lo[i] ..< hi[i] (lo == hi when
    /// none; lanes from rowCount on are meaningless); `columns` are the block's.
    ///
    /// Within a block a row's values are an affine function of the column (the vertical blend of
    /// two horizontal blends with weights linear in the column), so its pixels above the
    /// threshold form one run at an end of the block, whose length follows from the row's values
    /// at the block's two end columns. Those are computed with the exact per-pixel formula of
    /// `value`, for 16 rows at once; the run's length is then exact except for a pixel whose
    /// value lies within float rounding of the threshold.
    public func forEachBlockRun(of map: UnsafePointer<Float>, above threshold: Float,
                                _ body: (_ firstRow: Int, _ rowCount: Int, _ lo: Lanes, _ hi: Lanes, _ columns: Range<Int>) -> Void) {
        let lanes = Self.lanes
        let rowBlocks = rows.blocks, colBlocks = cols.blocks
        let colBlockCount = colBlocks.count
        let words = (rowBlocks.count * colBlockCount + 63) / 64
        rows.paddedLowerWeight.withUnsafeBufferPointer { wy0s in
        rows.paddedUpperWeight.withUnsafeBufferPointer { wy1s in
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { hotBlocks in
            let hot = hotBlocks.baseAddress!
            hot.initialize(repeating: 0, count: words)
            // A block is hot when one of its corners is above the threshold: mark, for each
            // source value above it, the blocks it is a corner of.
            var any = false
            for y in 0..<height {
                for x in 0..<width where map[y * width + x] > threshold {
                    any = true
                    for rb in rows.blocksTouching[y] {
                        for cb in cols.blocksTouching[x] {
                            let b = rb * colBlockCount + cb
                            hot[b >> 6] |= 1 << UInt64(b & 63)
                        }
                    }
                }
            }
            guard any else { return }
            let t = Lanes(repeating: threshold)
            let wy0 = wy0s.baseAddress!, wy1 = wy1s.baseAddress!
            for word in 0..<words {
                var bits = hot[word]
                while bits != 0 {
                    let b = word << 6 | bits.trailingZeroBitCount
                    bits &= bits - 1
                    let rowBlock = rowBlocks[b / colBlockCount], block = colBlocks[b % colBlockCount]
                    let top = map + rowBlock.lower * width, bottom = map + rowBlock.upper * width
                    let a00 = top[block.lower], a01 = top[block.upper]
                    let a10 = bottom[block.lower], a11 = bottom[block.upper]
                    // Horizontal blends at the two end columns, exactly as `value` computes them.
                    let first = block.start, last = block.end - 1
                    let wxf0 = cols.lowerWeight[first], wxf1 = cols.upperWeight[first]
                    let wxl0 = cols.lowerWeight[last], wxl1 = cols.upperWeight[last]
                    let topFirst = wxf0 * a00 + wxf1 * a01, bottomFirst = wxf0 * a10 + wxf1 * a11
                    let topLast = wxl0 * a00 + wxl1 * a01, bottomLast = wxl0 * a10 + wxl1 * a11
                    let span = Float(last - first)
                    let start = Lanes(repeating: Float(first)), end = Lanes(repeating: Float(block.end))
                    let length = Lanes(repeating: Float(block.end - first))
                    for chunk in stride(from: rowBlock.start, to: rowBlock.end, by: lanes) {
                        let count = min(lanes, rowBlock.end - chunk)
                        let y0 = UnsafeRawPointer(wy0 + chunk).loadUnaligned(as: Lanes.self)
                        let y1 = UnsafeRawPointer(wy1 + chunk).loadUnaligned(as: Lanes.self)
                        let vFirst = y0 * topFirst + y1 * bottomFirst
                        let vLast = y0 * topLast + y1 * bottomLast
                        let firstAbove = vFirst .> t, lastAbove = vLast .> t
                        // Pixels above t counted from the end that is above: ⌈x⌉, where x is the
                        // distance, in columns, from that end to the crossing.
                        // x: where, as a fraction of the way from the first column to the last, the
                        // row crosses t (one division serves both directions).
                        let x = (vFirst - t) / (vFirst - vLast)
                        let falling = Self.ceiling(x * span, atMost: length)
                        let rising = Self.ceiling((1 - x) * span, atMost: length)
                        var lo = start, hi = start
                        hi.replace(with: start + falling, where: firstAbove)
                        lo.replace(with: end - rising, where: lastAbove .& .!firstAbove)
                        hi.replace(with: end, where: lastAbove)
                        body(chunk, count, lo, hi, first..<block.end)
                    }
                }
            }
        }}}
    }

    /// ⌈x⌉ clamped to 0...limit, with SSE2 only: no `roundps`, and no `pointwiseMin`, which
    /// Swift lowers lane by lane. Adding and removing 2²³ rounds to the nearest integer, then
    /// one step up where that fell below x. Lanes that are NaN stay NaN (callers discard them).
    @inline(__always) static func ceiling(_ x: Lanes, atMost limit: Lanes) -> Lanes {
        var x = x
        x.replace(with: limit, where: x .> limit)
        x.replace(with: Lanes(), where: x .< Lanes())
        let magic = Lanes(repeating: 8_388_608)
        var r = (x + magic) - magic
        r.replace(with: r + 1, where: r .< x)
        return r
    }

    /// Bit i set where lane i of `mask` is true. (Through integer lanes: Swift lowers
    /// `replacing(with:where:)` on 16 lanes one lane at a time.)
    @inline(__always) public static func laneBits(_ mask: SIMDMask<SIMD16<Int32>>) -> UInt64 {
        let weights = SIMD16<Int32>(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
        return UInt64(truncatingIfNeeded: (weights & unsafeBitCast(mask, to: SIMD16<Int32>.self)).wrappedSum())
    }

    /// The sum of 16 lanes, pairwise (exact for the small whole numbers it is used on).
    @inline(__always) public static func sum(_ v: Lanes) -> Float {
        let eight = v.lowHalf + v.highHalf, four = eight.lowHalf + eight.highHalf
        return four[0] + four[1] + four[2] + four[3]
    }

    static let laneIndex = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

    /// `v` with lanes from `count` on set to 0 (through the bits: no lane-by-lane select).
    @inline(__always) public static func firstLanes(_ count: Int, of v: Lanes) -> Lanes {
        if count >= lanes { return v }
        let keep = unsafeBitCast(laneIndex .< Int32(count), to: SIMD16<UInt32>.self)
        return unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & keep, to: Lanes.self)
    }
}
