import CHNDKernels

/// Merging candidate stores: the records of a shard are copied (byte for byte when both stores
/// keep their values alike).
///
/// A record keeps the values above the bound it was written under and their 3×3
/// neighbourhoods. A shard's bound is the k-th largest of its own values, which never exceeds the
/// k-th largest of the union — the merged bound — nor any later threshold: every record of a
/// shard keeps at least what the merged state needs (a superset), and every map a shard dropped
/// had a maximum at or below a bound that the merged one is above. Its `shedAt` speaks of its own
/// values only, so it stays true in the other store.
extension CandidateMaps {
    /// Appends a copy of `record`, a record of a store of the same map size: byte for byte when
    /// both keep their values alike; else widened, or narrowed to halves if it loses nothing
    /// (otherwise this store widens first).
    mutating func appendCopy(of record: Record) {
        makeUnique()
        if record.halfValues != halfValues {
            guard halfValues else { return appendWidened(record) }
            return appendNarrowed(record)
        }
        let size = record.bytes
        arena.reserve(size)
        (arena.base! + arena.used).copyMemory(from: record.pointer, byteCount: size)
        noteAppended(bytes: size)
    }

    /// Appends `record`, of a store of floats, to this store of halves, its values as halves —
    /// or widens this store and appends it as it is, when they are not all halves.
    private mutating func appendNarrowed(_ record: Record) {
        let kept = record.keptEnd, count = record.valueCount, size = kept + Self.valueBytes(count, halves: true)
        arena.reserve(size)
        let target = arena.base! + arena.used
        let halves = (target + kept).assumingMemoryBound(to: UInt16.self)
        guard hndd_encode_float16_exact(record.storedValues.assumingMemoryBound(to: Float.self), Int64(count), halves) != 0 else {
            widenValues()
            return appendCopy(of: record)
        }
        if count & 1 != 0 { halves[count] = 0 }
        target.copyMemory(from: record.pointer, byteCount: kept)
        noteAppended(bytes: size)
    }
}
