/// Stage III of one unit (docs/3-numbers.md): the local concepts of the unit's region, scored
/// over D_r, weighted by IoU and normalised over the region's concepts; and the unit's top images.
extension LayerAccumulator {
    /// Writes unit `u`'s local P and "paired" flags (and raw p-values when `out` holds the
    /// tests); nothing for an unlocalised unit. `iou` is Stage II's, in double precision.
    func stageThree(unit u: Int, column: UnsafePointer<Float>, sets: SeenSets, iou: [Double], scratch: inout [UInt64],
                    into out: SnapshotBuffers) {
        let r = Int(out.region[u])
        guard r >= 0, let (lo, hi) = RankedScores.range(of: column, at: sets.localImages), hi > lo else { return }
        let (score, weights) = stageThreeScores(region: r, column: column, lo: lo, hi: hi, sets: sets, scratch: &scratch)
        let (probabilities, total) = stageThreeProbabilities(unit: u, region: r, scores: score, iou: iou, sets: sets, into: out)
        if let tests = out.significance, total > 0 {
            testStageThree(unit: u, region: r, iou: iou, counts: sets.presentCounts, weights: weights,
                           probabilities: probabilities, into: tests)
        }
    }

    /// The weights w = R·MS' over D_r (MS' min–max normalised over the local set) and their
    /// sums per present concept of the region (global index, 0 elsewhere).
    func stageThreeScores(region r: Int, column: UnsafePointer<Float>, lo: Float, hi: Float, sets: SeenSets,
                          scratch: inout [UInt64]) -> (score: [Double], weights: PermutationNull.Weights) {
        let members = sets.regionImages[r], regionMask = index.regionConcepts[r]
        var score = [Double](repeating: 0, count: index.dictionary.conceptCount)
        let span = Double(hi) - Double(lo)
        var weights = PermutationNull.Weights()
        RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
            let image = Int(members[position])
            let weighted = rank * (Double(column[image]) - Double(lo)) / span
            weights.add(weighted)
            var bits = index.presentConcepts[image] & regionMask
            while bits != 0 {
                score[bits.trailingZeroBitCount] += weighted
                bits &= bits - 1
            }
        }
        return (score, weights)
    }

    /// P of the region's concepts from their summed weights (each over its N_c, times its IoU,
    /// then normalised over the region), written with the "paired" flags; returns P (global
    /// index) and the normaliser.
    func stageThreeProbabilities(unit u: Int, region r: Int, scores: [Double], iou: [Double], sets: SeenSets,
                                 into out: SnapshotBuffers) -> (probabilities: [Double], total: Double) {
        let l = index.dictionary.conceptCount, regionMask = index.regionConcepts[r]
        var score = scores, total = 0.0
        var concepts = regionMask
        while concepts != 0 {
            let c = concepts.trailingZeroBitCount
            score[c] = sets.presentCounts[c] > 0 ? score[c] / Double(sets.presentCounts[c]) * iou[c] : 0
            total += score[c]
            concepts &= concepts - 1
        }
        let regionSize = regionMask.nonzeroBitCount
        concepts = regionMask
        while concepts != 0 {
            let c = concepts.trailingZeroBitCount
            let p = total > 0 ? score[c] / total : 0
            out.localProb[u * l + c] = Float(p)
            out.localPaired[u * l + c] = StageRules.isPaired(p, conceptsInRegion: regionSize) ? 1 : 0
            score[c] = p
            concepts &= concepts - 1
        }
        return (score, total)
    }

    /// Writes the `options.topImages` images with unit `u`'s largest maxima, largest first (ties
    /// keep the earlier image).
    func topImages(unit u: Int, column: UnsafePointer<Float>, sets: SeenSets, into out: SnapshotBuffers) {
        let k = options.topImages
        guard k > 0 else { return }
        var best: [(value: Float, image: Int32)] = []
        for image in sets.allImages {
            let v = column[Int(image)]
            if best.count == k, v <= best[k - 1].value { continue }
            let at = best.firstIndex { v > $0.value } ?? best.count
            best.insert((v, image), at: at)
            if best.count > k { best.removeLast() }
        }
        for (i, entry) in best.enumerated() { out.topImages[u * k + i] = Int64(entry.image) }
    }
}
