/// The candidate maps in a checkpoint (`AccumulatorState`): the records of every store as one
/// list of columns, and back.
extension CandidateMaps {
    /// The stores' maps as one list of columns (the state format does not depend on how many
    /// stores a process uses). Each column is written straight from the stores, never gathered
    /// first: the maps are most of a pass's memory, and a gathered copy of them at every
    /// checkpoint was most of the daemon's peak.
    static func encode(_ stores: [CandidateMaps], into w: inout ByteWriter) {
        var records = 0, valueTotal = 0
        for store in stores { store.forEach { record in records += 1; valueTotal += record.valueCount } }
        func column(_ count: Int, _ put: (inout ByteWriter, Record, Int) -> Void) {
            w.put(Int64(count))
            for store in stores { store.forEach { record in put(&w, record, store.wordsPerMap) } }
        }
        column(records) { w, record, _ in w.put(record.unit) }
        column(records) { w, record, _ in w.put(record.image) }
        column(records) { w, record, _ in w.put(record.peak) }
        column(records * (stores.first?.wordsPerMap ?? 0)) { w, record, words in for j in 0..<words { w.put(record.kept(j)) } }
        // Floats, whether a store keeps halves or not: the format does not depend on it.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: stores.first?.mapSize ?? 0) { scratch in
            column(valueTotal) { w, record, _ in
                let values = record.values(wideningInto: scratch.baseAddress!)
                w.append(UnsafeRawBufferPointer(UnsafeBufferPointer(start: values, count: record.valueCount)))
            }
        }
        var valueStart: Int64 = 0
        w.put(Int64(records + 1)); w.put(valueStart)
        for store in stores { store.forEach { record in valueStart += Int64(record.valueCount); w.put(valueStart) } }
    }

    /// Reads what `encode` wrote into `storeCount` stores, each map into `store(unit)`; checks
    /// each map with `isValid(unit, image)` first.
    static func decode(from r: inout ByteReader, height: Int, width: Int, storeCount: Int, store: (Int32) -> Int,
                       isValid: (Int32, Int32) -> Bool) throws(StateError) -> [CandidateMaps] {
        var stores = [CandidateMaps](repeating: CandidateMaps(height: height, width: width), count: storeCount)
        let words = stores[0].wordsPerMap
        let units = try r.getArray(Int32.self), images = try r.getArray(Int32.self)
        let peaks = try r.getArray(Float.self), kept = try r.getArray(UInt64.self)
        let values = try r.getArray(Float.self)
        let valueStart = try r.getArray(Int64.self).map(Int.init)
        let n = units.count
        guard images.count == n, peaks.count == n, kept.count == n * words,
              valueStart.count == n + 1, valueStart.first == 0, valueStart.last == values.count else {
            throw StateError("candidate maps have inconsistent sizes")
        }
        var dense = [Float](repeating: -.infinity, count: height * width)
        for i in 0..<n {
            guard isValid(units[i], images[i]) else {
                throw StateError("candidate map \(i) names unit \(units[i]) of image \(images[i]), which this state cannot have")
            }
            let popcount = (0..<words).reduce(0) { $0 + kept[i * words + $1].nonzeroBitCount }
            guard valueStart[i + 1] - valueStart[i] == popcount else { throw StateError("candidate map \(i) is corrupt") }
            let s = store(units[i])
            stores[s].makeUnique()
            // Through a dense map (−∞ where not kept), as the record is written from one.
            for p in dense.indices { dense[p] = -.infinity }
            var v = valueStart[i]
            for j in 0..<words {
                var bits = kept[i * words + j]
                while bits != 0 { dense[j << 6 | bits.trailingZeroBitCount] = values[v]; v += 1; bits &= bits - 1 }
            }
            kept.withUnsafeBufferPointer { kept in
                stores[s].appendRecord(unit: units[i], image: images[i], peak: peaks[i], kept: kept.baseAddress! + i * words,
                                       bound: -.infinity, from: dense)
            }
        }
        for s in stores.indices { stores[s].bytesAfterDiscard = stores[s].arena.used }
        return stores
    }
}
