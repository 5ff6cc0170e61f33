import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// Where the daemon's memory is (issue 18): its resident size beside what it can attribute —
/// each open pass's maxima, top-k and candidate stores (`LayerMemory`), the ingest queue, and
/// the malloc heap (in use, free but kept: received messages are malloc'd by libzmq). libzmq's
/// own buffers (up to `DaemonSockets.ingestHighWaterMark` messages per connection) are in the
/// heap's figures, not apart. Logged at debug after every batch, and at info with each written
/// pass, by each layer worker for its own passes.
extension LayerWorker {
    /// The figures, in MiB (as VmRSS and `--queue-mb` count); `pass`: one pass's parts in detail,
    /// else the open passes' sums.
    func memoryMetadata(detailing pass: OpenPass? = nil) -> Logger.Metadata {
        func mb(_ bytes: Int) -> Logger.MetadataValue { "\(Self.megabytes(bytes))" }
        var metadata: Logger.Metadata = [:]
        if let resident = ProcessMemory.resident() { metadata["rss_mb"] = mb(resident.now); metadata["hwm_mb"] = mb(resident.peak) }
        let heap = ProcessHeap.now()
        metadata["heap_used_mb"] = mb(heap.inUse)
        metadata["heap_free_mb"] = mb(heap.free)
        metadata["heap_mapped_mb"] = mb(heap.mapped)
        let depth = context.queue.depth
        metadata["queue_mb"] = mb(depth.bytes)
        metadata["queue_batches"] = "\(depth.messages)"
        let parts = pass.map { [$0.accumulator.memory] } ?? state.book.open.values.map(\.accumulator.memory)
        metadata["maxima_mb"] = mb(parts.reduce(0) { $0 + $1.maxima })
        metadata["topk_mb"] = mb(parts.reduce(0) { $0 + $1.topValues })
        metadata["candidates_mb"] = mb(parts.reduce(0) { $0 + $1.candidateTotal })
        metadata["candidates"] = "\(parts.reduce(0) { $0 + $1.candidateCount })"
        metadata["baseline_mb"] = mb(parts.reduce(0) { $0 + $1.baselineMaxima })
        if let part = parts.first, pass != nil {
            metadata["candidate_stores_mb"] = "\(part.candidateBytes.map(Self.megabytes).joined(separator: ","))"
        }
        metadata["open_passes"] = "\(state.book.open.count)"
        return metadata
    }

    /// After a batch of `key`'s pass, at debug level only (reading /proc and the heap's lists
    /// costs tens of microseconds).
    func logMemory(after key: PassKey) {
        guard context.logger.logLevel <= .debug else { return }
        context.logger.debug("memory", metadata: memoryMetadata(detailing: state.book.open[key]))
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1_048_576) }
}
