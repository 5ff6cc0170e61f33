import Foundation
import HNDWire

/// An admitted ingest message of one of a worker's layers, as the engine thread routed it: its
/// header checked and parsed there, once.
struct RoutedBatch {
    let batch: CheckedBatch
    /// Its number in the router (`LayerRouter.route`), by which a worker that refused it and holds
    /// nothing of its layer has the name forgotten (`EngineOutbox.forget`).
    let number: UInt64
    var layer: String { batch.header.layer }
    var byteCount: Int { batch.message.byteCount }
}

/// What the engine thread hands a layer worker.
enum WorkItem {
    case batch(RoutedBatch)
    /// Work on the worker's state, run on its thread between batches (restoring a checkpoint,
    /// waiting at a `Rendezvous`).
    case task(@Sendable (LayerWorker) -> Void)
    /// Write what is due and end the thread.
    case stop
}

/// A worker's FIFO of items. Its bytes are not bounded here: the batches in it still count
/// against the ingest queue's one budget (`IngestQueue.release`), whichever worker holds them.
final class WorkerInbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var items = ClearingFIFO<WorkItem>()

    var isEmpty: Bool {
        condition.lock(); defer { condition.unlock() }
        return items.isEmpty
    }

    /// Queues `item` behind everything already queued.
    func push(_ item: WorkItem) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    /// Queues `item` before everything queued: it runs as soon as the item in hand is done.
    func pushFront(_ item: WorkItem) {
        condition.lock()
        items.prepend(item)
        condition.signal()
        condition.unlock()
    }

    /// The next item, waiting at most `timeout` seconds for one.
    func pop(timeout: Double) -> WorkItem? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while items.isEmpty {
            if !condition.wait(until: deadline) { return nil }
        }
        return items.popFirst()
    }
}

/// Where every layer worker stops and waits until the engine thread lets it go on: while they
/// wait, the engine thread alone touches their states (checkpoints, control requests). Reaching
/// it through the workers' inboxes gives what it waits for: behind every earlier item (a flush
/// answered after every earlier batch) or in front of them (a checkpoint, at the next batch's
/// boundary).
final class Rendezvous: @unchecked Sendable {
    private let condition = NSCondition()
    private var arrived = 0
    private var released = false

    /// Called by a worker: counts itself in, then waits until `release`.
    func arriveAndWait() {
        condition.lock(); defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        while !released { condition.wait() }
    }

    /// Called by the engine thread: blocks until `count` workers wait here, running `meanwhile`
    /// every turn of waiting (the engine thread publishes what the others computed meanwhile).
    func waitForArrivals(_ count: Int, meanwhile: () -> Void) {
        condition.lock()
        while arrived < count {
            if !condition.wait(until: Date(timeIntervalSinceNow: Daemon.turnSeconds)) {
                condition.unlock()
                meanwhile()
                condition.lock()
            }
        }
        condition.unlock()
    }

    func release() {
        condition.lock()
        released = true
        condition.broadcast()
        condition.unlock()
    }
}
