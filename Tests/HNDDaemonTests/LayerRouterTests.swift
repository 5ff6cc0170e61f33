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
}
