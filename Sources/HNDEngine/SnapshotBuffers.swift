/// Where one snapshot's units write their results: one allocation per array, made once per
/// snapshot and filled in place by the units (each writes only its own rows), then copied into
/// the `LayerSnapshot` and freed. Plain pointers, so that the per-unit stages need no closure
/// around each array.
struct SnapshotBuffers: @unchecked Sendable { // units write disjoint rows
    let threshold: UnsafeMutableBufferPointer<Float>
    let globalProb: UnsafeMutableBufferPointer<Float>
    let globalBiased: UnsafeMutableBufferPointer<UInt8>
    let iou: UnsafeMutableBufferPointer<Float>
    let region: UnsafeMutableBufferPointer<Int32>
    let localProb: UnsafeMutableBufferPointer<Float>
    let localPaired: UnsafeMutableBufferPointer<UInt8>
    let netdissect: UnsafeMutableBufferPointer<Int32>
    let topImages: UnsafeMutableBufferPointer<Int64>
    /// Where the raw p-values go; nil when the snapshot skips the tests (a partial pass).
    let significance: SignificanceOutput?

    /// Buffers holding `snap`'s initial values (and, with `nullSets`, `raw`'s).
    init(_ snap: LayerSnapshot, raw: RawPValues, nullSets: NullSets?, change: ChangeTestOutput? = nil) {
        threshold = Self.copy(snap.threshold)
        globalProb = Self.copy(snap.globalProb)
        globalBiased = Self.copy(snap.globalBiased)
        iou = Self.copy(snap.iou)
        region = Self.copy(snap.region)
        localProb = Self.copy(snap.localProb)
        localPaired = Self.copy(snap.localPaired)
        netdissect = Self.copy(snap.netdissectConcept)
        topImages = Self.copy(snap.topImages)
        significance = nullSets.map { SignificanceOutput(sets: $0, global: Self.copy(raw.global), local: Self.copy(raw.local), change: change) }
    }

    /// Copies the results into `snap` and `raw` and frees the buffers (this value is unusable after).
    func finish(into snap: inout LayerSnapshot, raw: inout RawPValues) {
        snap.threshold = Self.take(threshold)
        snap.globalProb = Self.take(globalProb)
        snap.globalBiased = Self.take(globalBiased)
        snap.iou = Self.take(iou)
        snap.region = Self.take(region)
        snap.localProb = Self.take(localProb)
        snap.localPaired = Self.take(localPaired)
        snap.netdissectConcept = Self.take(netdissect)
        snap.topImages = Self.take(topImages)
        if let significance {
            raw.global = Self.take(significance.global)
            raw.local = Self.take(significance.local)
        }
    }

    private static func copy<T>(_ values: [T]) -> UnsafeMutableBufferPointer<T> {
        let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: values.count)
        _ = buffer.initialize(from: values)
        return buffer
    }

    private static func take<T>(_ buffer: UnsafeMutableBufferPointer<T>) -> [T] {
        defer { buffer.deallocate() }
        return Array(buffer)
    }
}
