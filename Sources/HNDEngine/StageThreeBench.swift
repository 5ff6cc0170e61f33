/// Stage III both ways (see `StageScoreBenchmark`): the engine's `stageThree`, and per region the
/// weights matrix W [C_r × N_r] of the region's units times the presence matrix [N_r × K_r].
/// Unit u is given region u mod R and IoU 0.05 + 0.001·c for concept c.
struct StageThreeBench {
    typealias B = StageScoreBenchmark
    let layer: LayerAccumulator
    let maxima: SharedRows<Float>
    let repeats: Int

    var regionCount: Int { layer.index.regionConcepts.count }
    var iou: [Double] { (0..<layer.index.dictionary.conceptCount).map { 0.05 + 0.001 * Double($0) } }

    func run(into report: inout B.Report) {
        let sets = SeenSets(layer), units = layer.units, l = layer.index.dictionary.conceptCount, iou = self.iou
        let whole = B.time(repeats) {
            let out = buffers()
            B.perUnit(units) { u in
                var scratch: [UInt64] = []
                layer.stageThree(unit: u, column: column(u), sets: sets, iou: iou, scratch: &scratch, into: out)
            }
            _ = out.finished(layer)
        }
        let reference = engineSums(sets: sets)
        var loops = [Double](repeating: 0, count: units * l), double = loops, single = loops
        var t = (weights: 0.0, loops: 0.0, dgemm: 0.0, sgemm: 0.0)
        for r in 0..<regionCount {
            let regionUnits = Array(stride(from: r, to: units, by: regionCount))
            var w = SharedRows<Double>(repeating: 0, count: 0)
            t.weights += B.time(repeats) { w = weightsMatrix(region: r, units: regionUnits, sets: sets) }
            let w64 = w.array, w32 = w64.map(Float.init)
            let y64: [Double] = presenceMatrix(region: r, sets: sets), y32: [Float] = presenceMatrix(region: r, sets: sets)
            t.loops += B.time(repeats) { scoreLoops(region: r, units: regionUnits, w: w, sets: sets, into: &loops) }
            t.dgemm += B.time(repeats) { product(region: r, units: regionUnits, w: w64, y: y64, into: &double) }
            t.sgemm += B.time(repeats) { product(region: r, units: regionUnits, w: w32, y: y32, into: &single) }
        }
        report.timings += [
            .init(name: "stage III whole, engine loops", seconds: whole),
            .init(name: "stage III weights matrices (ranking + R·MS')", seconds: t.weights),
            .init(name: "stage III score part, loops over W", seconds: t.loops),
            .init(name: "stage III score part, dgemm", seconds: t.dgemm),
            .init(name: "stage III score part, sgemm", seconds: t.sgemm),
            .init(name: "stage III weights + dgemm", seconds: t.weights + t.dgemm),
        ]
        report.agreements += [B.agreement("stage III loops over W (image order) vs engine (rank order)", loops, reference),
                              B.agreement("stage III dgemm vs engine", double, reference),
                              B.agreement("stage III sgemm vs engine", single, reference)]
    }

    func column(_ u: Int) -> UnsafePointer<Float> { UnsafePointer(maxima.pointer.baseAddress! + u * layer.index.imageCount) }

    /// A snapshot's buffers with unit u in region u mod R.
    func buffers() -> SnapshotBuffers {
        let out = benchBuffers(layer)
        for u in 0..<layer.units { out.region[u] = Int32(u % regionCount) }
        return out
    }

    /// The sums per concept `stageThreeScores` makes, [C, L].
    func engineSums(sets: SeenSets) -> [Double] {
        let l = layer.index.dictionary.conceptCount
        let out = SharedRows<Double>(repeating: 0, count: layer.units * l)
        B.perUnit(layer.units) { u in
            let column = column(u), r = u % regionCount
            guard let (lo, hi) = RankedScores.range(of: column, at: sets.localImages), hi > lo else { return }
            var scratch: [UInt64] = []
            let (score, _) = layer.stageThreeScores(region: r, column: column, lo: lo, hi: hi, sets: sets, scratch: &scratch)
            for c in 0..<l { out.pointer[u * l + c] = score[c] }
        }
        return out.array
    }

    /// W [units × N_r] over D_r: R·MS' as `stageThreeScores` computes it (MS' over the local set).
    func weightsMatrix(region r: Int, units: [Int], sets: SeenSets) -> SharedRows<Double> {
        let members = sets.regionImages[r], n = members.count
        let w = SharedRows<Double>(repeating: 0, count: units.count * n)
        B.perUnit(units.count) { i in
            let column = column(units[i])
            guard let (lo, hi) = RankedScores.range(of: column, at: sets.localImages), hi > lo else { return }
            let span = Double(hi) - Double(lo)
            var scratch: [UInt64] = []
            RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
                w.pointer[i * n + position] = rank * (Double(column[Int(members[position])]) - Double(lo)) / span
            }
        }
        return w
    }

    /// The score loop over W in image order: each weight added to the image's present concepts.
    func scoreLoops(region r: Int, units: [Int], w: SharedRows<Double>, sets: SeenSets, into sums: inout [Double]) {
        let members = sets.regionImages[r], n = members.count, l = layer.index.dictionary.conceptCount
        let mask = layer.index.regionConcepts[r], present = layer.index.presentConcepts
        let out = SharedRows<Double>(repeating: 0, count: units.count * l)
        B.perUnit(units.count) { i in
            for position in 0..<n {
                var bits = present[Int(members[position])] & mask
                while bits != 0 { out.pointer[i * l + bits.trailingZeroBitCount] += w.pointer[i * n + position]; bits &= bits - 1 }
            }
        }
        for (i, u) in units.enumerated() { for c in 0..<l { sums[u * l + c] = out.pointer[i * l + c] } }
    }

    /// The region's presence matrix [N_r × K_r] (row: image, column: concept within the region).
    func presenceMatrix<T: GemmScalar>(region r: Int, sets: SeenSets) -> [T] {
        let concepts = concepts(of: r), members = sets.regionImages[r]
        var y = [T](repeating: 0, count: members.count * concepts.count)
        for (position, image) in members.enumerated() {
            for (j, c) in concepts.enumerated() where layer.index.presentConcepts[Int(image)] & (1 << UInt64(c)) != 0 {
                y[position * concepts.count + j] = 1
            }
        }
        return y
    }

    /// W · Y, scattered into `sums` [C, L].
    func product<T: GemmScalar>(region r: Int, units: [Int], w: [T], y: [T], into sums: inout [Double]) {
        let l = layer.index.dictionary.conceptCount, concepts = concepts(of: r), k = concepts.count, n = y.count / k
        var c = [T](repeating: 0, count: units.count * k)
        T.gemm(w, y, &c, m: units.count, k: n, n: k)
        for (i, u) in units.enumerated() { for (j, concept) in concepts.enumerated() { sums[u * l + concept] = Double(c[i * k + j]) } }
    }

    func concepts(of r: Int) -> [Int] {
        let mask = layer.index.regionConcepts[r]
        return (0..<64).filter { mask & (1 << UInt64($0)) != 0 }
    }
}
