import CHNDKernels
import Dispatch

/// Every present concept's mask (SPEC §1) as one run of columns per grid row, for every image,
/// computed once from the dictionary. Stage II intersects a map's runs of pixels above the
/// threshold with these runs, so no S×S grid is ever painted.
///
/// About 4 bytes per masked row: 30 MB for the paper's 24,632 local images.
public struct ConceptSpans: Sendable {
    /// One present concept's mask on one image: rows `firstRow ..< firstRow + rowCount`, whose
    /// runs start at `runStart`, within the columns `columnLo ..< columnHi`. (The C kernel's
    /// struct, so that the kernel reads the masks where they are.)
    public typealias Mask = hndd_mask

    /// Masks of image n: `masks[maskStart[n] ..< maskStart[n + 1]]`.
    public let maskStart: [Int]
    public let masks: [Mask]
    /// Half-open column runs [lo, hi) per masked row; lo == hi for a row the mask skips.
    public let runLo: [UInt16]
    public let runHi: [UInt16]

    public init(_ dictionary: FaceDictionary) {
        let n = dictionary.imageCount, l = dictionary.conceptCount
        precondition(dictionary.maskSize <= Int(UInt16.max), "mask size \(dictionary.maskSize) is too large")
        // Images are independent: rasterise slices in parallel, then concatenate.
        let slices = max(1, min(n, 64))
        var parts = [(masks: [Mask], lo: [UInt16], hi: [UInt16], counts: [Int])](repeating: ([], [], [], []), count: slices)
        parts.withUnsafeMutableBufferPointer { parts in
            let out = UnsafeSendable(parts.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: slices) { slice in
                var masks: [Mask] = [], lo: [UInt16] = [], hi: [UInt16] = [], counts: [Int] = []
                for image in (slice * n / slices)..<((slice + 1) * n / slices) {
                    let before = masks.count
                    for c in 0..<l {
                        guard let mask = dictionary.mask(image: image, concept: c), let rows = mask.candidateRows else { continue }
                        var first = -1, last = -1
                        var rowRuns: [(Int, Int)] = []
                        for row in rows {
                            if let span = mask.span(row: row) {
                                if first < 0 { first = row }
                                last = row
                                rowRuns.append((span.lowerBound, span.upperBound + 1))
                            } else {
                                rowRuns.append((0, 0))
                            }
                        }
                        guard first >= 0 else { continue }
                        let start = lo.count
                        var columnLo = Int.max, columnHi = 0
                        for (i, row) in rows.enumerated() where row >= first && row <= last {
                            lo.append(UInt16(rowRuns[i].0)); hi.append(UInt16(rowRuns[i].1))
                            if rowRuns[i].1 > rowRuns[i].0 {
                                columnLo = min(columnLo, rowRuns[i].0); columnHi = max(columnHi, rowRuns[i].1)
                            }
                        }
                        masks.append(Mask(concept: Int32(c), firstRow: Int32(first), rowCount: Int32(last - first + 1),
                                          columnLo: Int32(columnLo), columnHi: Int32(columnHi), reserved: 0, runStart: Int64(start)))
                    }
                    counts.append(masks.count - before)
                }
                (out.value + slice).pointee = (masks, lo, hi, counts)
            }
        }
        var maskStart = [0], masks: [Mask] = [], runLo: [UInt16] = [], runHi: [UInt16] = []
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
        self.runLo = runLo
        self.runHi = runHi
    }

    /// The masks of image `n`.
    @inlinable public func masks(ofImage n: Int) -> ArraySlice<Mask> { masks[maskStart[n]..<maskStart[n + 1]] }

    /// Number of pixels in a mask.
    public func area(of mask: Mask) -> Int {
        var total = 0
        for r in Int(mask.runStart)..<(Int(mask.runStart) + Int(mask.rowCount)) { total += Int(runHi[r]) - Int(runLo[r]) }
        return total
    }
}
