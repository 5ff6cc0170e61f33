import Dispatch

/// Why two states of a layer cannot be merged. Nothing was changed.
public enum MergeError: Error, Equatable, CustomStringConvertible {
    case layer(String, String)
    case dictionary(images: Int, concepts: Int, otherImages: Int, otherConcepts: Int)
    case options(DissectionOptions, DissectionOptions)
    case units(Int, Int)
    case mapSize(height: Int, width: Int, otherHeight: Int, otherWidth: Int)
    /// Both states saw these images: their values would count twice in the top-k.
    case overlap(firstImage: Int, images: Int)

    public var description: String {
        switch self {
        case let .layer(a, b): "the states are of different layers (\(a), \(b))"
        case let .dictionary(n, l, on, ol):
            "the states belong to different dictionaries (\(n) images and \(l) concepts, \(on) and \(ol))"
        case let .options(a, b):
            "the states were made with different options (quantile \(a.quantile), IoU floor \(a.iouFloor), "
                + "\(a.topImages) top images; quantile \(b.quantile), IoU floor \(b.iouFloor), \(b.topImages) top images)"
        case let .units(a, b): "the states have different unit counts (\(a), \(b))"
        case let .mapSize(h, w, oh, ow): "the states have different map sizes (\(h)×\(w), \(oh)×\(ow))"
        case let .overlap(first, count):
            "the states share \(count) image\(count == 1 ? "" : "s") (first: image \(first)); shards must hold disjoint images"
        }
    }
}

/// Merging the states of one probe pass split by image (several daemons, one share each): every
/// piece is a union or a sum, so the merged state equals one accumulator fed every image — the
/// seen set, the maxima, the counts of images and mask areas, the top-k (`TopValues.merge`) and
/// the candidate maps (`CandidateMaps.appendCopy`: each shard kept at least what the merged
/// bound needs). Its snapshot is the snapshot of the whole pass, bit for bit.
extension LayerAccumulator {
    /// Why `other` cannot be merged into this state, or nil.
    public func mergeRefusal(_ other: LayerAccumulator) -> MergeError? {
        guard layer == other.layer else { return .layer(layer, other.layer) }
        guard index.imageCount == other.index.imageCount, index.conceptCount == other.index.conceptCount else {
            return .dictionary(images: index.imageCount, concepts: index.conceptCount,
                               otherImages: other.index.imageCount, otherConcepts: other.index.conceptCount)
        }
        guard options == other.options else { return .options(options, other.options) }
        if units > 0, other.units > 0 {
            guard units == other.units else { return .units(units, other.units) }
            guard height == other.height, width == other.width else {
                return .mapSize(height: height, width: width, otherHeight: other.height, otherWidth: other.width)
            }
        }
        let shared = (0..<index.imageCount).filter { seen[$0] && other.seen[$0] }
        if let first = shared.first { return .overlap(firstImage: first, images: shared.count) }
        return nil
    }

    /// Adds the images of `other`, a state of the same layer, dictionary and options over
    /// disjoint images. Throws, changing nothing, when they disagree.
    public mutating func merge(_ other: LayerAccumulator) throws(MergeError) {
        if let refusal = mergeRefusal(other) { throw refusal }
        guard other.units > 0 else { return }
        if units == 0 { start(units: other.units, height: other.height, width: other.width) }
        mergeBaseline(of: other)
        mergeImages(of: other)
        for u in 0..<units { topValues[u].merge(other.topValues[u]) }
        mergeCandidates(of: other)
    }

    /// The seen set, the maxima and the per-image sums.
    mutating func mergeImages(of other: LayerAccumulator) {
        let n = index.imageCount
        let theirs = (0..<n).filter { other.seen[$0] }
        for image in theirs { seen[image] = true }
        for u in 0..<units {
            for image in theirs { maxima[u * n + image] = other.maxima[u * n + image] }
        }
        imagesSeen += other.imagesSeen
        localImagesSeen += other.localImagesSeen
        // Sums of whole numbers of pixels: exact in any order.
        for c in maskAreaSeen.indices { maskAreaSeen[c] += other.maskAreaSeen[c] }
    }

    /// Every record of `other` into the store of its unit, then one sweep per store under the
    /// merged bounds (which drops what no threshold can need any more; the counts do not change).
    mutating func mergeCandidates(of other: LayerAccumulator) {
        var storeOfUnit = [Int](repeating: 0, count: units)
        for s in candidates.indices { for u in shardUnits(s) { storeOfUnit[u] = s } }
        for store in other.candidates {
            store.forEach { record in candidates[storeOfUnit[Int(record.unit)]].appendCopy(of: record) }
        }
        let bounds = topValues.map(\.lowerBound), storeCount = candidates.count
        candidates.withUnsafeMutableBufferPointer { stores in
            let stores = UnsafeSendable(stores.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: storeCount) { s in
                stores.value[s].discard(bounds: bounds)
            }
        }
    }
}
