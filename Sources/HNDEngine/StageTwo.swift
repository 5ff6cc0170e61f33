/// Stage II of one unit (docs/3-numbers.md): threshold, IoU per concept, region and the Network
/// Dissection label, from the counts `stageTwoCounts` made.
extension LayerAccumulator {
    /// Writes unit `u`'s threshold, IoU, region and Network Dissection label; returns its IoU
    /// per concept in double precision (Stage III weighs by it), zero before any local image.
    func stageTwo(unit u: Int, threshold t: Float, counts: [Int64], into out: SnapshotBuffers) -> [Double] {
        let dictionary = index.dictionary, l = dictionary.conceptCount
        var iou = [Double](repeating: 0, count: l)
        guard localImagesSeen > 0 else { return iou }
        out.threshold[u] = t
        let first = u * index.stageTwoRows
        for c in 0..<l {
            let intersection = Double(counts[first + index.countRows + c])
            var activation = 0.0
            for row in index.countRowsOfConcept[c] { activation += Double(counts[first + row]) }
            let union = activation + maskAreaSeen[c] - intersection
            iou[c] = union > 0 ? intersection / union : 0
            out.iou[u * l + c] = Float(iou[c])
        }
        var best = 0
        for c in 1..<l where iou[c] > iou[best] { best = c }
        if iou[best] >= options.iouFloor {
            out.region[u] = dictionary.conceptRegion[best]
            out.netdissect[u] = Int32(best)
        }
        return iou
    }
}
