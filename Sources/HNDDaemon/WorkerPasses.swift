import Foundation
import HNDEngine
import HNDStore
import HNDWire
import Logging

/// What a layer worker does with its batches and passes: apply, refuse, publish, write.
extension LayerWorker {
    /// Applies a routed batch (its header checked by the engine thread) to its pass, or refuses it.
    func ingestBatch(_ routed: RoutedBatch) {
        let result = context.decoder.withDecoded(routed.batch, scratch: &values) { batch, v in
            let key = PassKey(run: batch.run, layer: batch.layer, step: batch.step)
            return Result { () throws(Rejection) in
                (key, try state.book.ingest(key, imageIDs: batch.imageIDs, units: batch.units, height: batch.height,
                                            width: batch.width, values: v, now: Date().timeIntervalSince1970))
            }
        }
        switch result {
        case let .success((key, outcome)):
            state.counters.batchesAccepted += 1
            state.counters.imagesAccepted += UInt64(outcome.accepted)
            if !outcome.duplicates.isEmpty {
                context.logger.warning("repeated image ids counted once", metadata: ["pass": "\(key)", "ids": "\(outcome.duplicates.prefix(10))"])
            }
            logMemory(after: key)
        case let .failure(error):
            state.counters.reject(error.reason, error.description, logger: context.logger)
            forgetUnlessHeld(routed)
        }
    }

    /// After refusing `routed`: when this worker holds nothing of its layer (every batch of it was
    /// refused), asks the engine thread to forget the name (`LayerRouter.forget`).
    func forgetUnlessHeld(_ routed: RoutedBatch) {
        guard !state.holdsAnything(of: routed.layer) else { return }
        context.outbox.forget(routed.layer, refusedBatch: routed.number)
    }

    /// Writes the passes due now (complete, timed out or superseded) as one append, publishes
    /// their snapshots and asks the engine thread for a checkpoint, so that a restart does not
    /// resume them.
    func writeDuePasses(now: Double) {
        let due = state.book.due(now: now)
        guard !due.isEmpty else { return }
        // A complete snapshot whose baseline's weights are being built waits for them rather than
        // building its own.
        let complete = due.filter { state.book.open[$0]?.accumulator.imagesSeen == state.book.index.imageCount }
        attachBuiltBaselineWeights(waitingFor: Set(complete.map(RunLayer.init)))
        var rows: [LayerSnapshot] = []
        var written: [OpenPass] = []
        for key in due {
            let started = Date().timeIntervalSince1970, cpuStarted = ProcessCPU.seconds()
            guard let (pass, snapshot, phases) = state.book.finish(key, now: now) else { continue }
            publishSnapshot(snapshot, duplicates: pass.duplicates)
            let published = Date().timeIntervalSince1970, cpu = ProcessCPU.seconds() - cpuStarted
            rows.append(snapshot)
            // Only a shard keeps the state; otherwise the pass's memory goes with this iteration,
            // before the baseline's weights below are made.
            if context.shardStates != nil { written.append(pass) }
            var status = state.book.status(of: pass)
            status.open = false
            status.imagesCheckpointed = status.imagesSeen // written to the snapshot file
            state.recentlyFinished[key.layer, default: []].append(status)
            if state.recentlyFinished[key.layer]!.count > 8 { state.recentlyFinished[key.layer]!.removeFirst() }
            let shareComplete = pass.accumulator.imagesSeen == state.book.expectedImages
            context.logger.info(context.shardStates != nil ? (shareComplete ? "shard pass complete" : "shard pass ended incomplete")
                                    : (snapshot.complete ? "pass complete" : "pass written incomplete"),
                                metadata: ["pass": "\(key)", "images": "\(snapshot.imagesSeen)/\(state.book.expectedImages)",
                                           "interpretable": "\(snapshot.interpretableUnits)/\(snapshot.units)",
                                           // Computed and handed to the engine thread, which publishes it next turn.
                                           "snapshot_s": "\(String(format: "%.3f", published - started))",
                                           // All threads of the daemon (other layers' workers too): what it cost on a shared machine.
                                           "snapshot_cpu_s": "\(String(format: "%.3f", cpu))"]
                                    .merging(Self.metadata(of: phases)) { mine, _ in mine }
                                    .merging(memoryMetadata(detailing: pass)) { mine, _ in mine })
        }
        if let shardStates = context.shardStates {
            keep(written, in: shardStates)
        } else {
            do {
                try context.output.append(rows)
            } catch {
                context.logger.critical("cannot append to the snapshot file: \(error)")
            }
        }
        written.removeAll()
        context.outbox.wantCheckpoint()
        startBaselineWeightsBuilds() // of baselines these passes made: after their snapshots are out
        // The finished passes' arrays were freed into the heap (the top-k's buffers, among
        // others, are smaller than its mapping threshold), and a burst of messages may have left
        // free space in it: give the pages back, so that an idle daemon holds what it keeps.
        ProcessHeap.trim()
    }

    /// The engine's seconds per phase of a snapshot (`SnapshotPhases.printedFields`), for its pass's line.
    static func metadata(of phases: SnapshotPhases) -> Logger.Metadata {
        Logger.Metadata(uniqueKeysWithValues: phases.printedFields.map { ($0.name, "\($0.value)") })
    }

    /// An image shard writes no rows (a share is not a pass): it keeps each finished pass's state
    /// for `hndd merge`.
    func keep(_ passes: [OpenPass], in states: ShardStates) {
        for pass in passes {
            do {
                try states.save(pass, index: state.book.index, options: state.book.options)
                context.logger.info("shard state kept for hndd merge", metadata: ["pass": "\(pass.key)", "file": "\(states.path(of: pass.key))"])
            } catch {
                context.logger.critical("cannot keep the state of \(pass.key) for hndd merge: \(error)")
            }
        }
    }

    /// Publishes a partial snapshot of each open pass with new images that the schedule wants.
    /// Returns whether it published any.
    func publishPartials(now: Double) -> Bool {
        var published = false
        for key in Array(state.book.open.keys) {
            guard let pass = state.book.open[key], pass.imagesPublished != pass.accumulator.imagesSeen,
                  state.schedule.wantsPartial(secondsToComplete: pass.expectedSecondsToComplete) else { continue }
            published = true
            publishSnapshot(state.book.snapshot(of: pass, now: now), duplicates: pass.duplicates)
            state.book.update(key) { $0.imagesPublished = pass.accumulator.imagesSeen }
        }
        return published
    }

    /// Keeps the snapshot as its layer's latest and hands its frames to the engine thread.
    func publishSnapshot(_ snapshot: LayerSnapshot, duplicates: [Int64]) {
        let message = Hndd_Snapshot(snapshot, taxonomy: context.taxonomy, duplicates: duplicates)
        state.latest[snapshot.layer] = message
        do {
            context.outbox.publish(try SnapshotPublication.encode(message))
        } catch {
            context.logger.error("publish: \(error)")
        }
    }
}
