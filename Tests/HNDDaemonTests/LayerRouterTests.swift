import Testing
@testable import HNDDaemon

/// Which worker owns which layer: the first layers one each, in the order they arrive; the rest
/// shared by a stable hash of the name.
@Suite struct LayerRouterTests {
    @Test func theFirstLayersGetAWorkerEachInTheOrderTheyArrive() {
        var router = LayerRouter(workerCount: 3)
        #expect(router.worker(for: "conv5") == 0)
        #expect(router.worker(for: "conv1") == 1)
        #expect(router.worker(for: "conv5") == 0) // the same layer, the same worker
        #expect(router.worker(for: "fc") == 2)
        #expect(router.workersInUse == 3)
        #expect(router.workerOfLayer == ["conv5": 0, "conv1": 1, "fc": 2])
    }

    @Test func layersBeyondTheWorkersShareThemByAStableHashOfTheName() {
        var router = LayerRouter(workerCount: 3)
        for layer in ["a", "b", "x"] { _ = router.worker(for: layer) }
        // FNV-1a (64 bits) of the name's UTF-8 bytes, modulo the worker count.
        #expect(router.worker(for: "c") == 0)
        #expect(router.worker(for: "d") == 1)
        #expect(router.worker(for: "layer9") == 2)
        #expect(router.workersInUse == 3)
        // Whatever came before: another router, other first layers, the same shared worker.
        var other = LayerRouter(workerCount: 3)
        for layer in ["p", "q", "r"] { _ = other.worker(for: layer) }
        #expect(other.worker(for: "layer9") == 2)
        #expect(LayerRouter.sharedWorker(of: "conv1", among: 8) == 2)
    }

    @Test func aDaemonHasAtMostEightWorkers() {
        var router = LayerRouter()
        let workers = (0..<20).map { router.worker(for: "layer\($0)") }
        #expect(Array(workers.prefix(8)) == Array(0..<8))
        #expect(workers.allSatisfy { (0..<8).contains($0) })
        #expect(router.workersInUse == 8)
    }

    @Test func aLayerItsWorkerHoldsNothingOfIsForgottenAndItsWorkerGoesToTheNextNewLayer() {
        var router = LayerRouter(workerCount: 2)
        let (good, zeroth) = router.route(batchOf: "conv1")
        let (bogus, first) = router.route(batchOf: "cnov1"), (_, second) = router.route(batchOf: "cnov1")
        #expect(good == 0 && bogus == 1 && [zeroth, first, second] == [1, 2, 3])
        // The worker's word on the first refused batch comes too late: the second is on its way.
        let tooEarly = router.forget("cnov1", refusedBatch: first)
        #expect(!tooEarly)
        #expect(router.workerOfLayer == ["conv1": 0, "cnov1": 1])
        let inTime = router.forget("cnov1", refusedBatch: second)
        #expect(inTime && router.workerOfLayer == ["conv1": 0] && router.lastBatchOfLayer == ["conv1": 1])
        let again = router.forget("cnov1", refusedBatch: second) // gone already
        #expect(!again)
        // Its worker, started and holding no layer, goes to the next new layer, not a hash.
        let next = router.worker(for: "conv2")
        #expect(next == 1 && router.workersInUse == 2)
        // A layer given a worker for a checkpoint's passes (no batch yet) is not a batch's to forget.
        let forgotten = router.forget("conv2", refusedBatch: 3)
        #expect(!forgotten)
    }

    @Test func refusedNamesLeaveTheRouterTheLayersHeldAndTheirWorkers() {
        var router = LayerRouter()
        _ = router.route(batchOf: "real")
        for i in 0..<1000 {
            let (_, number) = router.route(batchOf: "bogus\(i)")
            router.forget("bogus\(i)", refusedBatch: number)
        }
        #expect(router.workerOfLayer == ["real": 0] && router.lastBatchOfLayer.count == 1)
        #expect(router.workersInUse == 2) // the first bogus name started worker 1; each later one reused it
        // The daemon's own workers still go to the real layers that come next.
        let next = (1...7).map { router.worker(for: "layer\($0)") }
        #expect(next == Array(1...7))
    }
}
