/// The bytes a layer's streaming state holds, by part (issue 18): what the daemon logs beside
/// its queue and its resident size, so that a peak can be attributed. Each figure is the memory
/// the part has written (resident), not what it merely reserved: a candidate store's mapping
/// beyond its used bytes is never touched before it is used, and is given back at every sweep.
public struct LayerMemory: Sendable, Equatable {
    /// The maxima [C, N], float32 (a baseline taken from a finished pass shares them).
    public var maxima = 0
    /// The top-k buffers, one per unit (`TopValues.bytes`).
    public var topValues = 0
    /// Bytes of candidate records in each store, and records in all of them.
    public var candidateBytes: [Int] = []
    public var candidateCount = 0
    /// The run's baseline maxima attached to this pass, when it has one (shared with the other
    /// passes of the run's layer: counted once per pass here).
    public var baselineMaxima = 0

    public var candidateTotal: Int { candidateBytes.reduce(0, +) }
    /// Everything above.
    public var total: Int { maxima + topValues + candidateTotal + baselineMaxima }
}

extension LayerAccumulator {
    /// What the state holds now (a walk over C top-k buffers and the stores' counters: cheap).
    public var memory: LayerMemory {
        LayerMemory(maxima: maxima.capacity * MemoryLayout<Float>.stride,
                    topValues: topValues.reduce(0) { $0 + $1.bytes },
                    candidateBytes: candidates.map(\.bytes), candidateCount: candidates.reduce(0) { $0 + $1.count },
                    baselineMaxima: (baselineMaxima?.capacity ?? 0) * MemoryLayout<Float>.stride)
    }
}
