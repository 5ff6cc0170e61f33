/// Merging candidate stores: the records of a shard are copied byte for byte.
///
/// A record keeps the values above the bound it was written under and their 3×3
/// neighbourhoods. A shard's bound is the k-th largest of its own values, which never exceeds the
/// k-th largest of the union — the merged bound — nor any later threshold: every record of a
/// shard keeps at least what the merged state needs (a superset), and every map a shard dropped
/// had a maximum at or below a bound that the merged one is above. Its `shedAt` speaks of its own
/// values only, so it stays true in the other store.
extension CandidateMaps {
    /// Appends a copy of `record`, a record of a store of the same map size.
    mutating func appendCopy(of record: Record) {
        makeUnique()
        let size = record.bytes
        arena.reserve(size)
        (arena.base! + arena.used).copyMemory(from: record.pointer, byteCount: size)
        arena.noteRecord(at: arena.used)
        arena.used += size
        arena.count += 1
    }
}
