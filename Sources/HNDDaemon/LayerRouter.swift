/// Which worker thread owns which layer (issue 18, "three layers at once"). Each layer's batches
/// go to one worker, always the same while the worker holds anything of the layer, so they are
/// applied in the order they arrived, exactly as when one thread applied every layer; layers on
/// different workers proceed at the same time. A new layer gets a worker holding no layer if one
/// was started, else a new one while fewer than `workerCount` run; past that, layers share them,
/// each by a stable hash of its name.
///
/// A layer whose batches were all refused holds nothing on its worker: the worker says so
/// (`forget`), and the name is dropped, so that a long-running daemon fed misspelt or bogus names
/// does not remember each of them, nor keep its own workers for them. The word counts only if no
/// batch of the layer was routed since the refused one (`RoutedBatch.number`): one still queued
/// might be accepted, and must find its worker. A pure value: tested directly.
public struct LayerRouter: Sendable, Equatable {
    /// Most worker threads of one daemon: beyond this, layers share workers (each worker's passes
    /// hold their maps' candidates, so more threads would only contend for the same cores).
    public static let maximumWorkers = 8

    public let workerCount: Int
    /// The worker of each layer routed and not forgotten.
    public private(set) var workerOfLayer: [String: Int] = [:]
    /// The number of each such layer's last batch routed (batches are numbered from 1 in the
    /// order routed); 0 for a layer given a worker for something else (a checkpoint's passes).
    public private(set) var lastBatchOfLayer: [String: UInt64] = [:]
    /// Batches routed so far.
    public private(set) var batchesRouted: UInt64 = 0
    /// Workers started so far (0 ..< workersInUse); a started worker stays, with or without layers.
    public private(set) var workersInUse = 0

    public init(workerCount: Int = LayerRouter.maximumWorkers) {
        precondition(workerCount >= 1, "a router needs at least one worker")
        self.workerCount = workerCount
    }

    /// The worker of `layer`, given one if it has none yet.
    public mutating func worker(for layer: String) -> Int {
        if let worker = workerOfLayer[layer] { return worker }
        let worker: Int
        if let idle = idleWorker() {
            worker = idle
        } else if workersInUse < workerCount {
            worker = workersInUse
            workersInUse += 1
        } else {
            worker = Self.sharedWorker(of: layer, among: workerCount)
        }
        workerOfLayer[layer] = worker
        lastBatchOfLayer[layer] = 0
        return worker
    }

    /// The worker of a batch of `layer`, and the batch's number (for `forget`).
    public mutating func route(batchOf layer: String) -> (worker: Int, number: UInt64) {
        let worker = worker(for: layer)
        batchesRouted += 1
        lastBatchOfLayer[layer] = batchesRouted
        return (worker, batchesRouted)
    }

    /// Drops `layer`, whose worker refused batch `number` of it and holds nothing of it, unless
    /// another batch of it was routed since. Returns whether it was dropped.
    @discardableResult
    public mutating func forget(_ layer: String, refusedBatch number: UInt64) -> Bool {
        guard lastBatchOfLayer[layer] == number else { return false }
        workerOfLayer[layer] = nil
        lastBatchOfLayer[layer] = nil
        return true
    }

    /// The first started worker that holds no layer (every layer it had was forgotten).
    private func idleWorker() -> Int? {
        let busy = Set(workerOfLayer.values)
        return (0..<workersInUse).first { !busy.contains($0) }
    }

    /// The worker a layer beyond the first `count` shares: FNV-1a of its name, so the same name
    /// always lands on the same worker, whatever came before it.
    static func sharedWorker(of layer: String, among count: Int) -> Int {
        var hash = FNV1a()
        hash.mix(Array(layer.utf8))
        return Int(hash.value % UInt64(count))
    }
}
