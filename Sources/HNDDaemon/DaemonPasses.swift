import Foundation
import HNDEngine
import HNDStore
import HNDWire

/// What the engine thread does with batches and passes: apply, refuse, publish, write, checkpoint.
extension Daemon {
    func ingestBatch(_ message: ZMQMultipart, loop: inout EngineLoop) {
        let result: Result<(PassKey, BatchOutcome), Rejection>
        do {
            result = try loop.decoder.withDecoded(message, scratch: &loop.values) { batch, v in
                let key = PassKey(run: batch.run, layer: batch.layer, step: batch.step)
                return Result { () throws(Rejection) in
                    (key, try book.ingest(key, imageIDs: batch.imageIDs, units: batch.units, height: batch.height,
                                          width: batch.width, values: v, now: Date().timeIntervalSince1970))
                }
            }
        } catch {
            reject(error.reason, "\(error)")
            return
        }
        switch result {
        case let .success((key, outcome)):
            counters.batchesAccepted += 1
            prepareBaselineWeights() // a new pass of a run-layer whose weights were dropped
            counters.imagesAccepted += UInt64(outcome.accepted)
            if !outcome.duplicates.isEmpty {
                logger.warning("repeated image ids counted once", metadata: ["pass": "\(key)", "ids": "\(outcome.duplicates.prefix(10))"])
            }
            logMemory(after: key)
        case let .failure(error):
            reject(error.reason, error.description)
        }
    }

    func reject(_ reason: RejectionReason, _ description: String) {
        counters.rejected[reason, default: 0] += 1
        logger.error("batch rejected (\(reason.rawValue)): \(description)")
    }

    /// Writes the passes due now (complete, timed out or superseded) as one append, publishes
    /// their snapshots and checkpoints, so that a restart does not resume them.
    func writeDuePasses(now: Double, publish: ZMQSocket) {
        let due = book.due(now: now)
        guard !due.isEmpty else { return }
        var rows: [LayerSnapshot] = []
        var written: [OpenPass] = []
        for key in due {
            let started = Date().timeIntervalSince1970, cpuStarted = ProcessCPU.seconds()
            guard let (pass, snapshot) = book.finish(key, now: now) else { continue }
            publishSnapshot(snapshot, duplicates: pass.duplicates, on: publish)
            let published = Date().timeIntervalSince1970, cpu = ProcessCPU.seconds() - cpuStarted
            rows.append(snapshot)
            // Only a shard keeps the state; otherwise the pass's memory goes with this iteration,
            // before the checkpoint and the baseline's weights below are made.
            if shardStates != nil { written.append(pass) }
            var status = passStatus(pass)
            status.open = false
            status.imagesCheckpointed = status.imagesSeen // written to the snapshot file
            recentlyFinished[key.layer, default: []].append(status)
            if recentlyFinished[key.layer]!.count > 8 { recentlyFinished[key.layer]!.removeFirst() }
            let shareComplete = pass.accumulator.imagesSeen == book.expectedImages
            logger.info(shardStates != nil ? (shareComplete ? "shard pass complete" : "shard pass ended incomplete")
                            : (snapshot.complete ? "pass complete" : "pass written incomplete"),
                        metadata: ["pass": "\(key)", "images": "\(snapshot.imagesSeen)/\(book.expectedImages)",
                                   "interpretable": "\(snapshot.interpretableUnits)/\(snapshot.units)",
                                   "snapshot_s": "\(String(format: "%.3f", published - started))",
                                   // All threads of the daemon, the receiver's too: what it cost on a shared machine.
                                   "snapshot_cpu_s": "\(String(format: "%.3f", cpu))"]
                            .merging(memoryMetadata(detailing: pass)) { mine, _ in mine })
        }
        if let shardStates {
            keep(written, in: shardStates)
        } else {
            do {
                try output.append(rows)
            } catch {
                logger.critical("cannot append to the snapshot file: \(error)")
            }
        }
        written.removeAll()
        checkpoint()
        prepareBaselineWeights()
        // The finished passes' arrays were freed into the heap (the top-k's buffers, among
        // others, are smaller than its mapping threshold), and a burst of messages may have left
        // free space in it: give the pages back, so that an idle daemon holds what it keeps.
        ProcessHeap.trim()
    }

    /// Builds the change test's weights of new baselines (`PassBook.prepareBaselineWeights`),
    /// after the due passes are out: the baseline pass's own snapshot does not wait for them.
    func prepareBaselineWeights() {
        guard !book.baselineWeights.pending.isEmpty else { return }
        for built in book.prepareBaselineWeights(clock: { Date().timeIntervalSince1970 }) {
            logger.info("baseline weights built", metadata: [
                "baseline": "\(built.runLayer)", "seconds": "\(String(format: "%.3f", built.seconds))",
                "MB": "\(String(format: "%.1f", Double(built.bytes) / 1e6))",
                "kept_MB": "\(String(format: "%.1f", Double(book.baselineWeights.bytes) / 1e6))"])
        }
    }

    /// An image shard writes no rows (a share is not a pass): it keeps each finished pass's state
    /// for `hndd merge`.
    func keep(_ passes: [OpenPass], in states: ShardStates) {
        for pass in passes {
            do {
                try states.save(pass, index: book.index, options: book.options)
                logger.info("shard state kept for hndd merge", metadata: ["pass": "\(pass.key)", "file": "\(states.path(of: pass.key))"])
            } catch {
                logger.critical("cannot keep the state of \(pass.key) for hndd merge: \(error)")
            }
        }
    }

    /// Publishes a partial snapshot of each open pass with new images that the schedule wants.
    /// Returns whether it published any.
    func publishPartials(now: Double, publish: ZMQSocket) -> Bool {
        var published = false
        for key in Array(book.open.keys) {
            guard let pass = book.open[key], pass.imagesPublished != pass.accumulator.imagesSeen,
                  schedule.wantsPartial(secondsToComplete: pass.expectedSecondsToComplete) else { continue }
            published = true
            publishSnapshot(book.snapshot(of: pass, now: now), duplicates: pass.duplicates, on: publish)
            book.update(key) { $0.imagesPublished = pass.accumulator.imagesSeen }
        }
        return published
    }

    func publishSnapshot(_ snapshot: LayerSnapshot, duplicates: [Int64], on publish: ZMQSocket) {
        let message = Hndd_Snapshot(snapshot, taxonomy: taxonomy, duplicates: duplicates)
        latest[snapshot.layer] = message
        do {
            // Never blocks: a subscriber that cannot keep up loses snapshots, not the daemon time.
            _ = try publish.send(try SnapshotPublication.encode(message), dontWait: true)
        } catch {
            logger.error("publish: \(error)")
        }
    }

    func checkpoint() {
        do {
            try Checkpoint.write(book, to: configuration.runDirectory.checkpointFile)
            for key in book.open.keys { book.update(key) { $0.imagesCheckpointed = $0.accumulator.imagesSeen } }
        } catch {
            logger.error("checkpoint: \(error)")
        }
    }

    func resumeFromCheckpoint() throws {
        let resumed = try Checkpoint.read(configuration.runDirectory.checkpointFile, into: &book)
        // A pass written just before a crash, with the checkpoint not yet updated, is not resumed.
        for (layer, run, step) in try output.writtenPasses() {
            book.dropWritten(PassKey(run: run, layer: layer, step: step))
        }
        if resumed > 0 { logger.info("resumed open passes from checkpoint", metadata: ["passes": "\(resumed)"]) }
        prepareBaselineWeights()
    }
}
