import Foundation
import HNDEngine
import HNDStore
import HNDWire

/// What the engine thread does with batches and passes: hand them to their layer's worker,
/// refuse the malformed, publish what the workers computed, checkpoint, resume.
extension Daemon {
    /// Hands an admitted batch to its layer's worker. Its header is checked here, once (the worker
    /// takes it with the message): a message refused here never reaches one.
    func route(_ message: ZMQMultipart, security: EndpointSecurity) {
        guard admits(message, security: security, what: "batch") else {
            queue.release(byteCount: message.byteCount)
            return
        }
        do {
            layerWorkers.route(try layerWorkers.context.decoder.check(message))
        } catch {
            counters.reject(error.reason, "\(error)", logger: logger)
            queue.release(byteCount: message.byteCount)
        }
    }

    /// Publishes the snapshots the workers left, in the order they left them, notes whether one
    /// of them wants a checkpoint (it wrote a pass), and forgets the layers they hold nothing of.
    func publishOutbox(on publish: ZMQSocket) {
        let taken = outbox.take()
        for (layer, number) in taken.forgettable { layerWorkers.forget(layer, refusedBatch: number) }
        for frames in taken.publications {
            do {
                // Never blocks: a subscriber that cannot keep up loses snapshots, not the daemon time.
                _ = try publish.send(frames, dontWait: true)
            } catch {
                logger.error("publish: \(error)")
            }
        }
        if taken.checkpointWanted { checkpointOwed = true }
    }

    /// Checkpoints every open pass, the workers waiting at their next batch boundary meanwhile
    /// (publishing on `publish`, if given, while the others finish the batch in hand).
    func checkpoint(publishingOn publish: ZMQSocket?) {
        layerWorkers.atNextBoundary(meanwhile: { if let publish { publishOutbox(on: publish) } }) { writeCheckpoint(of: $0) }
    }

    /// Checkpoints the passes of `workers`, which must be waiting (or ended). A checkpoint a
    /// worker wanted before it waited is owed no more.
    func writeCheckpoint(of workers: [LayerWorker]) {
        checkpointOwed = false
        do {
            try Checkpoint.write(workers.map(\.state.book), index: layerWorkers.emptyBook.index,
                                 options: layerWorkers.emptyBook.options, to: configuration.runDirectory.checkpointFile)
        } catch {
            logger.error("checkpoint: \(error)")
            return
        }
        for worker in workers { worker.state.book.markCheckpointed() }
    }

    /// Gives each layer's worker what the checkpoint holds of that layer, and the passes the
    /// snapshot file already holds (written just before a crash, with the checkpoint not yet
    /// updated: not resumed). Each worker takes them before any batch.
    func resumeFromCheckpoint() throws {
        let book = layerWorkers.emptyBook
        let restored = try Checkpoint.passes(configuration.runDirectory.checkpointFile, index: book.index, options: book.options)
        let written = try output.writtenPasses().map { PassKey(run: $0.run, layer: $0.layer, step: $0.step) }
        let passes = restored?.passes ?? [], finished = restored?.finished ?? [], baselines = restored?.baselines ?? [:]
        var layers = Set(passes.map(\.key.layer))
        layers.formUnion(finished.map(\.layer))
        layers.formUnion(baselines.keys.map(\.layer))
        layers.formUnion(written.map(\.layer))
        for layer in layers.sorted() {
            let mine = passes.filter { $0.key.layer == layer }, ended = finished.filter { $0.layer == layer }
            let maxima = baselines.filter { $0.key.layer == layer }, dropped = written.filter { $0.layer == layer }
            layerWorkers.worker(for: layer).inbox.push(.task { worker in
                worker.state.book.resume(mine, finished: ended, baselines: maxima, written: dropped)
            })
        }
        if !passes.isEmpty { logger.info("resumed open passes from checkpoint", metadata: ["passes": "\(passes.count)"]) }
    }
}
