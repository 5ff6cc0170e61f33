import Dispatch

/// Stage II's exact counts over the candidate maps (docs/3-numbers.md, Stage II).
extension LayerAccumulator {
    /// Stage II's counts at the thresholds, [C, stageTwoRows]: per unit, |M| summed per count
    /// row (annotation pattern), then Σ|M ∩ L_c| per concept, exactly, over the candidate maps.
    /// Maps not kept never exceed the threshold. Workers count the stores' pieces, each into the
    /// rows of its store's units. Maps are counted by the AVX-512 kernel where the CPU has it (and
    /// `useKernel`), else in Swift.
    func stageTwoCounts(thresholds: [Float], useKernel: Bool = true) -> [Int64] {
        let rows = index.stageTwoRows
        var counts = [Int64](repeating: 0, count: units * rows)
        guard let upsampler, localImagesSeen > 0 else { return counts }
        // Held here, so that its calls (which hold no reference) stay valid.
        let kernelOwner = useKernel ? countKernel : nil
        defer { withExtendedLifetime(kernelOwner) {} }
        // Pieces of every store, each counted into its own rows (the store's units), then added
        // up: many more tasks than workers, so that none counts alone at the end.
        let tasks = candidates.indices.flatMap { s in candidates[s].pieces.map { (store: s, piece: $0) } }
        let taskCounts = withStageTwoInputs(thresholds: thresholds, upsampler: upsampler,
                                            kernel: kernelOwner?.calls) { inputs in
            let taskCounts = UnsafeMutableBufferPointer<[Int64]>.allocate(capacity: tasks.count)
            _ = taskCounts.initialize(from: repeatElement([], count: tasks.count))
            let out = UnsafeSendable(taskCounts)
            DispatchQueue.concurrentPerform(iterations: tasks.count) { task in
                out.value[task] = countPiece(tasks[task].piece, of: tasks[task].store, inputs: inputs)
            }
            defer { taskCounts.deinitialize().deallocate() }
            return Array(taskCounts)
        }
        for (task, (s, _)) in tasks.enumerated() {
            let offset = shardUnits(s).lowerBound * rows
            for (i, n) in taskCounts[task].enumerated() { counts[offset + i] += n }
        }
        return counts
    }

    /// Calls `body` with raw pointers into everything Stage II's count reads (no reference
    /// counting per map); the pointers are valid only inside `body`.
    private func withStageTwoInputs<R>(thresholds: [Float], upsampler: BilinearUpsampler, kernel: CountKernel.Calls?,
                                       _ body: (StageTwoInputs) -> R) -> R {
        let spans = index.spans
        return thresholds.withUnsafeBufferPointer { thresholds in
            index.countRowsOfImage.withUnsafeBufferPointer { countRowsOfImage in
                spans.maskStart.withUnsafeBufferPointer { maskStart in
                    spans.masks.withUnsafeBufferPointer { masks in
                        spans.runLo.withUnsafeBufferPointer { runLo in
                            spans.runHi.withUnsafeBufferPointer { runHi in
                                body(StageTwoInputs(
                                    thresholds: thresholds.baseAddress!, countRowsOfImage: countRowsOfImage.baseAddress!,
                                    maskStart: maskStart.baseAddress!, masks: masks.baseAddress!, runLo: runLo, runHi: runHi,
                                    rows: index.stageTwoRows, countRows: index.countRows,
                                    maxMasksPerImage: spans.maxMasksPerImage, kernel: kernel, upsampler: upsampler))
                            }
                        }
                    }
                }
            }
        }
    }

    /// Stage II's counts of one piece of store `s`, [units of s, stageTwoRows].
    private func countPiece(_ piece: Range<Int>, of s: Int, inputs: StageTwoInputs) -> [Int64] {
        let store = candidates[s], firstUnit = shardUnits(s).lowerBound
        var mine = [Int64](repeating: 0, count: shardUnits(s).count * inputs.rows)
        var scratch = StageTwoScratch(mapSize: mapSize, maxMasksPerImage: inputs.maxMasksPerImage)
        defer { scratch.deallocate() }
        mine.withUnsafeMutableBufferPointer { mine in
            let mine = mine.baseAddress!
            store.forEach(in: piece) { record in
                Self.countMap(record, of: store, into: mine + (Int(record.unit) - firstUnit) * inputs.rows,
                              inputs: inputs, scratch: &scratch)
            }
        }
        return mine
    }

    /// Adds one candidate map's counts to its unit's row block `unitCounts` (nothing when its
    /// peak does not exceed the threshold).
    @inline(__always)
    private static func countMap(_ record: CandidateMaps.Record, of store: CandidateMaps, into unitCounts: UnsafeMutablePointer<Int64>,
                                 inputs: StageTwoInputs, scratch: inout StageTwoScratch) {
        let t = inputs.thresholds[Int(record.unit)]
        guard record.peak > t else { return }
        let image = Int(record.image)
        let first = inputs.maskStart[image], maskCount = inputs.maskStart[image + 1] - first
        let imageMasks = inputs.masks + first, overlap = scratch.overlap
        overlap.initialize(repeating: 0, count: maskCount)
        let area: Int
        if let kernel = inputs.kernel {
            area = kernel.count(kept: record.keptWords(unpackingInto: scratch.kept), values: record.storedValues,
                                halfValues: record.halfValues, threshold: t, image: image, masks: imageMasks, runLo: inputs.runLo.baseAddress!, runHi: inputs.runHi.baseAddress!,
                                overlap: overlap)
        } else {
            store.expand(record, into: scratch.dense)
            area = countBlockRuns(of: scratch.dense, above: t, upsampler: inputs.upsampler, masks: imageMasks,
                                  maskCount: maskCount, runLo: inputs.runLo, runHi: inputs.runHi,
                                  overlap: overlap, chunks: &scratch.chunks)
        }
        guard area > 0 else { return }
        var bits = inputs.countRowsOfImage[image]
        while bits != 0 { unitCounts[bits.trailingZeroBitCount] += Int64(area); bits &= bits - 1 }
        // A concept's pieces are disjoint: their overlaps add up to the concept's.
        for m in 0..<maskCount { unitCounts[inputs.countRows + Int(imageMasks[m].concept)] += overlap[m] }
    }

    /// The Swift count of one map: returns |M| at `t` and adds |M ∩ masks[m]| to `overlap[m]`.
    /// `chunks` is scratch.
    static func countBlockRuns(of dense: UnsafePointer<Float>, above t: Float, upsampler: BilinearUpsampler,
                               masks: UnsafePointer<ConceptSpans.Mask>, maskCount: Int,
                               runLo: UnsafeBufferPointer<UInt16>, runHi: UnsafeBufferPointer<UInt16>,
                               overlap: UnsafeMutablePointer<Int64>, chunks: inout [BlockRunChunk]) -> Int {
        chunks.removeAll(keepingCapacity: true)
        var area = 0
        var rowLo = Int.max, rowHi = 0, columnLo = Int.max, columnHi = 0
        upsampler.forEachBlockRun(of: dense, above: t) { firstRow, rowCount, lo, hi, columns in
            let length = hi - lo
            let withRun = BilinearUpsampler.laneBits(length .> 0) & ((1 << UInt64(rowCount)) - 1)
            guard withRun != 0 else { return }
            area += Int(BilinearUpsampler.sum(BilinearUpsampler.firstLanes(rowCount, of: length)))
            let chunk = BlockRunChunk(firstRow: firstRow + withRun.trailingZeroBitCount,
                                      endRow: firstRow + 64 - withRun.leadingZeroBitCount,
                                      laneOffset: firstRow, columns: columns, lo: lo, hi: hi)
            rowLo = min(rowLo, chunk.firstRow); rowHi = max(rowHi, chunk.endRow)
            columnLo = min(columnLo, columns.lowerBound); columnHi = max(columnHi, columns.upperBound)
            chunks.append(chunk)
        }
        guard area > 0 else { return 0 }
        for m in 0..<maskCount {
            let mask = masks[m]
            let maskFirst = Int(mask.firstRow), maskEnd = maskFirst + Int(mask.rowCount)
            if maskEnd <= rowLo || maskFirst >= rowHi || Int(mask.columnHi) <= columnLo || Int(mask.columnLo) >= columnHi { continue }
            var sum = 0
            for chunk in chunks {
                if Int(mask.columnHi) <= chunk.columns.lowerBound || Int(mask.columnLo) >= chunk.columns.upperBound { continue }
                for row in max(chunk.firstRow, maskFirst)..<max(max(chunk.firstRow, maskFirst), min(chunk.endRow, maskEnd)) {
                    let r = Int(mask.runStart) + row - maskFirst, lane = row - chunk.laneOffset
                    let a = max(Int(chunk.lo[lane]), Int(runLo[r])), b = min(Int(chunk.hi[lane]), Int(runHi[r]))
                    if b > a { sum += b - a }
                }
            }
            overlap[m] += Int64(sum)
        }
        return area
    }
}

/// Raw pointers into what Stage II's count reads (see `withStageTwoInputs`), with its sizes.
struct StageTwoInputs: @unchecked Sendable { // read-only while the count runs
    let thresholds: UnsafePointer<Float>
    let countRowsOfImage: UnsafePointer<UInt64>
    let maskStart: UnsafePointer<Int>
    let masks: UnsafePointer<ConceptSpans.Mask>
    let runLo: UnsafeBufferPointer<UInt16>, runHi: UnsafeBufferPointer<UInt16>
    let rows: Int, countRows: Int, maxMasksPerImage: Int
    let kernel: CountKernel.Calls?
    let upsampler: BilinearUpsampler
}

/// One worker's scratch for Stage II's count: a dense map (the Swift path), a record's
/// kept-position words unpacked (the kernel's, for maps of several words), one overlap per piece
/// of an image's masks, and one map's block runs (gathered before the concept masks are visited
/// once each). Allocated once per piece of a store, freed with `deallocate`.
struct StageTwoScratch {
    let dense: UnsafeMutablePointer<Float>
    let kept: UnsafeMutablePointer<UInt64>
    let overlap: UnsafeMutablePointer<Int64>
    var chunks: [BlockRunChunk] = []

    init(mapSize: Int, maxMasksPerImage: Int) {
        dense = .allocate(capacity: mapSize)
        kept = .allocate(capacity: (mapSize + 63) / 64)
        overlap = .allocate(capacity: max(1, maxMasksPerImage))
        chunks.reserveCapacity(64)
    }

    func deallocate() {
        dense.deallocate()
        kept.deallocate()
        overlap.deallocate()
    }
}

/// Up to 16 rows of one block's runs above the threshold (see `forEachBlockRun`): rows
/// firstRow..<endRow hold runs; row r's is lo[r − laneOffset] ..< hi[r − laneOffset].
struct BlockRunChunk {
    let firstRow: Int, endRow: Int, laneOffset: Int
    let columns: Range<Int>
    let lo: BilinearUpsampler.Lanes, hi: BilinearUpsampler.Lanes
}

