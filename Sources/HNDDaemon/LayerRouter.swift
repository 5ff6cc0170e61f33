/// Which worker thread owns which layer (issue 18, "three layers at once"). Each layer's batches
/// go to one worker, always the same, so they are applied in the order they arrived, exactly as
/// when one thread applied every layer; layers on different workers proceed at the same time.
/// The first `workerCount` layers seen get a worker each; later ones share them, each by a stable
/// hash of its name. A pure value: tested directly.
public struct LayerRouter: Sendable, Equatable {
    /// Most worker threads of one daemon: beyond this, layers share workers (each worker's passes
    /// hold their maps' candidates, so more threads would only contend for the same cores).
    public static let maximumWorkers = 8

    public let workerCount: Int
    /// The worker of each layer routed so far.
    public private(set) var workerOfLayer: [String: Int] = [:]
    /// Workers given out so far (0 ..< workersInUse): the first layers' own ones.
    public private(set) var workersInUse = 0

    public init(workerCount: Int = LayerRouter.maximumWorkers) {
        precondition(workerCount >= 1, "a router needs at least one worker")
        self.workerCount = workerCount
    }

    /// The worker of `layer`, given one if it has none yet.
    public mutating func worker(for layer: String) -> Int {
        if let worker = workerOfLayer[layer] { return worker }
        let worker: Int
        if workersInUse < workerCount {
            worker = workersInUse
            workersInUse += 1
        } else {
            worker = Self.sharedWorker(of: layer, among: workerCount)
        }
        workerOfLayer[layer] = worker
        return worker
    }

    /// The worker a layer beyond the first `count` shares: FNV-1a of its name, so the same name
    /// always lands on the same worker, whatever came before it.
    static func sharedWorker(of layer: String, among count: Int) -> Int {
        var hash = FNV1a()
        hash.mix(Array(layer.utf8))
        return Int(hash.value % UInt64(count))
    }
}
