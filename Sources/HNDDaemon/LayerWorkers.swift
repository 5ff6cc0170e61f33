import Foundation
import HNDWire

/// The layer workers of a daemon, made as layers first arrive (`LayerRouter`), and the ways the
/// engine thread reaches all of them at once. Used by the engine thread only.
final class LayerWorkers {
    private(set) var router: LayerRouter
    private(set) var all: [LayerWorker] = []
    /// The book every worker starts from: no pass yet, the daemon's dictionary and options.
    let emptyBook: PassBook
    let context: WorkerContext
    private let running = DispatchGroup()
    /// Set once every worker has ended (`stop`): their states are the engine thread's then.
    private(set) var stopped = false

    init(emptyBook: PassBook, context: WorkerContext, workerCount: Int = LayerRouter.maximumWorkers) {
        router = LayerRouter(workerCount: workerCount)
        self.emptyBook = emptyBook
        self.context = context
    }

    /// The worker of `layer`, started if it is new.
    func worker(for layer: String) -> LayerWorker {
        started(router.worker(for: layer))
    }

    /// Hands an admitted batch to its layer's worker.
    func route(_ batch: CheckedBatch) {
        let (id, number) = router.route(batchOf: batch.header.layer)
        started(id).inbox.push(.batch(RoutedBatch(batch: batch, number: number)))
    }

    /// Forgets `layer`, whose worker refused batch `number` of it and holds nothing of it, unless
    /// a later batch of it was routed (`LayerRouter.forget`).
    func forget(_ layer: String, refusedBatch number: UInt64) {
        router.forget(layer, refusedBatch: number)
    }

    /// Worker `id`, started (with every worker before it) if it was not.
    private func started(_ id: Int) -> LayerWorker {
        while all.count <= id {
            let worker = LayerWorker(id: all.count, book: emptyBook, context: context)
            worker.start(running)
            all.append(worker)
        }
        return all[id]
    }

    /// The worker that holds `layer`'s passes, if any batch of it was ever routed.
    func owner(of layer: String) -> LayerWorker? {
        router.workerOfLayer[layer].map { all[$0] }
    }

    /// Runs `body` once every worker has done everything queued before this call, while all of
    /// them wait: what a control request sees has every earlier batch applied. `meanwhile` runs
    /// every turn of waiting for them.
    func afterQueuedWork<R>(meanwhile: () -> Void = {}, _ body: ([LayerWorker]) throws -> R) rethrows -> R {
        try together(all, inFront: false, meanwhile: meanwhile, body)
    }

    /// The same for `some` of the workers only: the others go on meanwhile, so `body` must touch
    /// the states of `some` alone (a request about one layer needs only that layer's worker).
    func afterQueuedWork<R>(of some: [LayerWorker], meanwhile: () -> Void = {}, _ body: ([LayerWorker]) throws -> R) rethrows -> R {
        try together(some, inFront: false, meanwhile: meanwhile, body)
    }

    /// Runs `body` once every worker has finished the item in hand, while all of them wait: a
    /// consistent image of every pass (each has a prefix of its batches applied) without waiting
    /// for the queued ones.
    func atNextBoundary<R>(meanwhile: () -> Void = {}, _ body: ([LayerWorker]) throws -> R) rethrows -> R {
        try together(all, inFront: true, meanwhile: meanwhile, body)
    }

    private func together<R>(_ workers: [LayerWorker], inFront: Bool, meanwhile: () -> Void,
                             _ body: ([LayerWorker]) throws -> R) rethrows -> R {
        guard !stopped, !workers.isEmpty else { return try body(workers) }
        let rendezvous = Rendezvous()
        let item = WorkItem.task { _ in rendezvous.arriveAndWait() }
        for worker in workers {
            if inFront { worker.inbox.pushFront(item) } else { worker.inbox.push(item) }
        }
        rendezvous.waitForArrivals(workers.count, meanwhile: meanwhile)
        defer { rendezvous.release() }
        return try body(workers)
    }

    /// Lets every worker apply what it holds and write what is due, then end; runs `meanwhile`
    /// (the engine thread's publishing) until they all have.
    func stop(meanwhile: () -> Void) {
        for worker in all { worker.inbox.push(.stop) }
        while running.wait(timeout: .now() + Daemon.turnSeconds) == .timedOut { meanwhile() }
        stopped = true
    }
}
