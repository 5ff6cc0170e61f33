import CHNDKernels
import Dispatch

/// Every present concept's mask (docs/1-dictionary.md) as *pieces* of at most one run of columns per grid row,
/// for every image, computed once from the dictionary. Stage II intersects a map's runs of pixels
/// above the threshold with these runs, so no S×S grid is ever painted.
///
/// An ellipse is one piece. A raster of any shape (two ellipses, a ring, several runs a row) is
/// split into pieces by `MaskPieces`: piece k holds one run of each row, and the pieces of a mask
/// are disjoint, so |M ∩ L_c| and |L_c| are the sums over the concept's pieces — which is what
/// Stage II adds up per concept.
///
/// About 4 bytes per masked row of a piece: 30 MB for the paper's 24,632 local images.
public struct ConceptSpans: Sendable {
    /// One piece of a present concept's mask on one image: rows `firstRow ..< firstRow + rowCount`,
    /// whose runs start at `runStart`, within the columns `columnLo ..< columnHi`. (The C kernel's
    /// struct, so that the kernel reads the masks where they are.)
    public typealias Mask = hndd_mask

    /// Pieces of image n: `masks[maskStart[n] ..< maskStart[n + 1]]`, by concept.
    public let maskStart: [Int]
    public let masks: [Mask]
    /// Half-open column runs [lo, hi) per row of a piece; lo == hi for a row the piece skips.
    /// Both begin and end with `HNDD_RUN_PADDING` empty runs no piece owns: a vector kernel loads
    /// 8 runs around a piece's rows at once.
    public let runLo: [UInt16]
    public let runHi: [UInt16]
    /// The most pieces any image has (scratch sizes).
    public let maxMasksPerImage: Int

    public init(_ dictionary: FaceDictionary) {
        let n = dictionary.imageCount
        precondition(dictionary.maskSize <= Int(UInt16.max), "mask size \(dictionary.maskSize) is too large")
        // Images are independent: decompose slices in parallel, then concatenate.
        let slices = max(1, min(n, 64))
        var parts = [Part](repeating: Part(), count: slices)
        parts.withUnsafeMutableBufferPointer { parts in
            let out = UnsafeSendable(parts.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: slices) { slice in
                var part = Part()
                for image in (slice * n / slices)..<((slice + 1) * n / slices) { part.add(image: image, of: dictionary) }
                (out.value + slice).pointee = part
            }
        }
        let padding = [UInt16](repeating: 0, count: Int(HNDD_RUN_PADDING))
        var maskStart = [0], masks: [Mask] = [], runLo = padding, runHi = padding
        for part in parts {
            let offset = runLo.count
            for count in part.counts { maskStart.append(maskStart.last! + count) }
            masks += part.masks.map { mask in
                var mask = mask
                mask.runStart += Int64(offset)
                return mask
            }
            runLo += part.lo; runHi += part.hi
        }
        self.maskStart = maskStart
        self.masks = masks
        self.runLo = runLo + padding
        self.runHi = runHi + padding
        maxMasksPerImage = zip(maskStart.dropFirst(), maskStart).map { $0 - $1 }.max() ?? 0
    }

    /// The pieces of a slice of images, as one worker builds them.
    struct Part {
        var masks: [Mask] = [], lo: [UInt16] = [], hi: [UInt16] = [], counts: [Int] = []
        var pieces = MaskPieces(), ellipseRuns: [MaskRasters.Run] = []

        /// Adds the pieces of every present concept of `image`.
        mutating func add(image: Int, of dictionary: FaceDictionary) {
            let before = masks.count
            for c in 0..<dictionary.conceptCount where dictionary.localLabel(image: image, concept: c) == 1 {
                if let rasters = dictionary.rasters {
                    pieces.split(rasters.runs(image: image, concept: c))
                } else {
                    dictionary.ellipseRuns(image: image, concept: c, into: &ellipseRuns)
                    pieces.split(ellipseRuns[...])
                }
                for k in 0..<pieces.count { append(pieces.piece(k), concept: c) }
            }
            counts.append(masks.count - before)
        }

        /// Appends one piece (at most one run per row, by row): a run for each of its rows, empty
        /// where it skips one.
        mutating func append(_ piece: ArraySlice<MaskRasters.Run>, concept c: Int) {
            let first = Int(piece.first!.row), last = Int(piece.last!.row), start = lo.count
            var columnLo = Int.max, columnHi = 0, next = piece.startIndex
            for row in first...last {
                guard Int(piece[next].row) == row else { lo.append(0); hi.append(0); continue }
                let run = piece[next]
                next += 1
                lo.append(run.lo); hi.append(run.hi)
                columnLo = min(columnLo, Int(run.lo)); columnHi = max(columnHi, Int(run.hi))
            }
            masks.append(Mask(concept: Int32(c), firstRow: Int32(first), rowCount: Int32(last - first + 1),
                              columnLo: Int32(columnLo), columnHi: Int32(columnHi), reserved: 0, runStart: Int64(start)))
        }
    }

    /// The pieces of image `n`.
    @inlinable public func masks(ofImage n: Int) -> ArraySlice<Mask> { masks[maskStart[n]..<maskStart[n + 1]] }

    /// Number of pixels in a piece.
    public func area(of mask: Mask) -> Int {
        var total = 0
        for r in Int(mask.runStart)..<(Int(mask.runStart) + Int(mask.rowCount)) { total += Int(runHi[r]) - Int(runLo[r]) }
        return total
    }
}

/// Splits one mask's runs into pieces holding at most one run per row. A run joins the piece of
/// a run in the row above that it touches (8-connected), when that piece has no run in its row
/// yet, else the lowest piece free in its row: a two-ellipse mask becomes its two ellipses, whose
/// column ranges stay tight, and a mask never has more pieces than its busiest row has runs.
/// Reused from mask to mask, so that its arrays are allocated once.
struct MaskPieces {
    /// The runs grouped by piece, each piece's by row: piece k is `runs[start[k] ..< start[k + 1]]`.
    private(set) var runs: [MaskRasters.Run] = []
    private(set) var start: [Int] = [0]
    var count: Int { start.count - 1 }
    /// The piece of each of the mask's runs, and the last row each piece has a run in.
    private var pieceOfRun: [Int] = []
    private var lastRow: [Int] = []

    /// The runs of piece `k`.
    func piece(_ k: Int) -> ArraySlice<MaskRasters.Run> { runs[start[k]..<start[k + 1]] }

    /// Splits `maskRuns` (by row, then column), replacing the previous mask's pieces.
    mutating func split(_ maskRuns: ArraySlice<MaskRasters.Run>) {
        runs.removeAll(keepingCapacity: true)
        start.removeAll(keepingCapacity: true)
        start.append(0)
        guard !maskRuns.isEmpty else { return }
        // One run per row (every ellipse): a single piece.
        if zip(maskRuns, maskRuns.dropFirst()).allSatisfy({ $0.row < $1.row }) {
            runs += maskRuns
            start.append(runs.count)
            return
        }
        assignPieces(maskRuns)
        // Group the runs by piece, keeping their order (by row within a piece).
        var counts = [Int](repeating: 0, count: lastRow.count)
        for k in pieceOfRun { counts[k] += 1 }
        for k in counts.indices { start.append(start[k] + counts[k]) }
        runs = Array(repeating: maskRuns.first!, count: maskRuns.count)
        var next = Array(start.dropLast())
        for (i, run) in zip(pieceOfRun.indices, maskRuns) {
            runs[next[pieceOfRun[i]]] = run
            next[pieceOfRun[i]] += 1
        }
    }

    /// Sets `pieceOfRun` and `lastRow` (one entry per piece) for `maskRuns`.
    private mutating func assignPieces(_ maskRuns: ArraySlice<MaskRasters.Run>) {
        pieceOfRun.removeAll(keepingCapacity: true)
        lastRow.removeAll(keepingCapacity: true)
        // The runs of the row above are maskRuns[above], those of this row so far from rowStart.
        var above = maskRuns.startIndex..<maskRuns.startIndex, rowStart = maskRuns.startIndex, row = -1
        for i in maskRuns.indices {
            let run = maskRuns[i]
            if Int(run.row) != row {
                above = Int(run.row) == row + 1 ? rowStart..<i : i..<i
                rowStart = i
                row = Int(run.row)
            }
            func isFree(_ k: Int) -> Bool { k >= lastRow.count || lastRow[k] != row }
            var piece = -1
            for j in above where maskRuns[j].lo <= run.hi && maskRuns[j].hi >= run.lo {
                let k = pieceOfRun[j - maskRuns.startIndex]
                if isFree(k) { piece = k; break }
            }
            if piece < 0 {
                piece = 0
                while !isFree(piece) { piece += 1 }
            }
            if piece == lastRow.count { lastRow.append(row) } else { lastRow[piece] = row }
            pieceOfRun.append(piece)
        }
    }
}
