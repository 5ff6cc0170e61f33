import COpenBLAS
import Dispatch

/// The permutation null of `PermutationNull` computed by brute force, to check the analytic
/// p-values (and to state what explicit permutations would cost live).
///
/// Layout: for one category (or region) with n images, S labels and B permutations, the permuted
/// labels are one matrix Y [n × B·S] (column b·S + j is 1 where permutation b gives an image label
/// j; in Stage III a row is the permuted image's presence vector), and the fixed rank weights of
/// a block of units are W [units × n]. One sgemm W·Y gives every unit's label sums under every
/// permutation at once; P follows per permutation as in docs/3-numbers.md. The p-value is
/// (1 + #{b : P_b ≥ P}) / (B + 1), so it is never below 1/(B + 1).
extension LayerAccumulator {
    /// Raw permutation p-values ([C, G], [C, L]; NaN where `snapshot` has no test) of `snapshot`,
    /// which must be this accumulator's current snapshot.
    public func permutationPValues(of snapshot: LayerSnapshot, permutations b: Int, seed: UInt64) -> RawPValues {
        copenblas_single_threaded()
        let sets = SeenSets(self), nullSets = NullSets(sets, index: index)
        var random = PermutationRandom(seed: seed)
        var out = RawPValues(global: .init(repeating: .nan, count: units * snapshot.subgroupCount),
                             local: .init(repeating: .nan, count: units * snapshot.conceptCount))
        for (category, members) in sets.categoryImages.enumerated() where !members.isEmpty {
            let subgroups = nullSets.categorySubgroups[category]
            let column = Dictionary(uniqueKeysWithValues: subgroups.enumerated().map { ($1, $0) })
            let labels = sets.categoryLabels[category].map { [column[Int($0)]!] }
            let family = PermutedFamily(images: members, rows: labels, width: subgroups.count,
                                        concepts: subgroups, counts: subgroups.map { sets.subgroupCounts[$0] })
            family.test(units: Array(0..<units), layer: self, normaliseOver: members, stride: snapshot.subgroupCount,
                        observed: snapshot.globalProb, iou: nil, permutations: b, random: &random, into: &out.global)
        }
        for r in nullSets.regionConcepts.indices where !sets.regionImages[r].isEmpty {
            let concepts = nullSets.regionConcepts[r]
            let regionUnits = (0..<units).filter { snapshot.region[$0] == Int32(r) }
            guard !regionUnits.isEmpty else { continue }
            let rows = sets.regionImages[r].map { image in
                concepts.indices.filter { index.presentConcepts[Int(image)] & (1 << UInt64(concepts[$0])) != 0 }
            }
            let family = PermutedFamily(images: sets.regionImages[r], rows: rows, width: concepts.count,
                                        concepts: concepts, counts: concepts.map { sets.presentCounts[$0] })
            family.test(units: regionUnits, layer: self, normaliseOver: sets.localImages, stride: snapshot.conceptCount,
                        observed: snapshot.localProb, iou: snapshot.iou, permutations: b, random: &random, into: &out.local)
        }
        return out
    }
}

/// One permuted set: its images, each image's labels (indices into `width` columns), and what
/// the columns are in the snapshot (subgroup or concept indices) with their image counts.
struct PermutedFamily {
    let images: [Int32]
    let rows: [[Int]]
    let width: Int
    let concepts: [Int]
    let counts: [Int]

    /// Units are ranked over `images`, normalised over `normaliseOver`; Stage III passes the IoU.
    func test(units: [Int], layer: LayerAccumulator, normaliseOver: [Int32], stride: Int, observed: [Float], iou: [Float]?,
              permutations b: Int, random: inout PermutationRandom, into out: inout [Double]) {
        let n = images.count
        let blockB = max(1, min(b, (8 << 20) / max(1, n * width)))
        var exceed = [Int](repeating: 0, count: units.count * width)
        var tested = [Bool](repeating: false, count: units.count)
        var done = 0
        while done < b {
            let chunk = min(blockB, b - done)
            let y = permutedLabels(chunk, random: &random)
            let block = 32
            let blocks = (units.count + block - 1) / block
            let results = UnsafeSendable(UnsafeMutablePointer<(exceed: [Int], tested: [Bool])>.allocate(capacity: blocks))
            DispatchQueue.concurrentPerform(iterations: blocks) { k in
                let slice = Array(units[(k * block)..<min(units.count, (k + 1) * block)])
                results.value.advanced(by: k).initialize(to: countExceeding(slice, y: y, permutations: chunk, layer: layer,
                                                                            normaliseOver: normaliseOver, stride: stride,
                                                                            observed: observed, iou: iou))
            }
            for k in 0..<blocks {
                let r = results.value[k]
                for (i, e) in r.exceed.enumerated() { exceed[k * block * width + i] += e }
                for (i, t) in r.tested.enumerated() { tested[k * block + i] = t }
            }
            results.value.deinitialize(count: blocks)
            results.value.deallocate()
            done += chunk
        }
        for (i, u) in units.enumerated() where tested[i] {
            for j in 0..<width { out[u * stride + concepts[j]] = Double(1 + exceed[i * width + j]) / Double(b + 1) }
        }
    }

    /// Y [n × chunk·width]: row i, column p·width + j is 1 when permutation p gives image i a row
    /// with label j.
    func permutedLabels(_ chunk: Int, random: inout PermutationRandom) -> [Float] {
        let n = images.count
        var y = [Float](repeating: 0, count: n * chunk * width)
        var order = Array(0..<n)
        for p in 0..<chunk {
            random.shuffle(&order)
            for i in 0..<n { for j in rows[order[i]] { y[i * chunk * width + p * width + j] = 1 } }
        }
        return y
    }

    /// For a few units: W·Y by sgemm, then how often each column's P under a permutation reaches
    /// the observed P. Units whose maxima do not vary are not tested.
    func countExceeding(_ units: [Int], y: [Float], permutations chunk: Int, layer: LayerAccumulator, normaliseOver: [Int32],
                        stride: Int, observed: [Float], iou: [Float]?) -> (exceed: [Int], tested: [Bool]) {
        let n = images.count, columns = chunk * width
        var w = [Float](repeating: 0, count: units.count * n)
        var tested = [Bool](repeating: false, count: units.count)
        var scratch: [UInt64] = []
        layer.maxima.withUnsafeBufferPointer { maxima in
            for (i, u) in units.enumerated() {
                let column = maxima.baseAddress! + u * layer.index.imageCount
                guard let (lo, hi) = RankedScores.range(of: column, at: normaliseOver), hi > lo else { continue }
                tested[i] = true
                let span = Double(hi) - Double(lo)
                RankedScores.forEachAverageRank(values: column, members: images, scratch: &scratch) { position, rank in
                    w[i * n + position] = Float(rank * (Double(column[Int(images[position])]) - Double(lo)) / span)
                }
            }
        }
        var sums = [Float](repeating: 0, count: units.count * columns)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(units.count), Int32(columns), Int32(n),
                    1, w, Int32(n), y, Int32(columns), 0, &sums, Int32(columns))
        var exceed = [Int](repeating: 0, count: units.count * width)
        var p = [Double](repeating: 0, count: width)
        for (i, u) in units.enumerated() where tested[i] {
            for permutation in 0..<chunk {
                var total = 0.0
                for j in 0..<width {
                    let factor = iou.map { Double($0[u * stride + concepts[j]]) } ?? 1
                    p[j] = counts[j] > 0 ? Double(sums[i * columns + permutation * width + j]) / Double(counts[j]) * factor : 0
                    total += p[j]
                }
                for j in 0..<width where total > 0 && p[j] / total >= Double(observed[u * stride + concepts[j]]) - 1e-6 {
                    exceed[i * width + j] += 1
                }
            }
        }
        return (exceed, tested)
    }
}

/// SplitMix64: the permutations' random numbers, seeded so that a check can be repeated.
struct PermutationRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Fisher–Yates.
    mutating func shuffle(_ a: inout [Int]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }
}
