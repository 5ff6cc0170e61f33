/// Stage I both ways (see `StageScoreBenchmark`): the engine's `stageOne`, and per category the
/// weights matrix W [C × N_g] (shared by categories over the same images, as the engine shares
/// rankings) times the 0/1 label matrix [N_g × S_g].
struct StageOneBench {
    typealias B = StageScoreBenchmark
    let layer: LayerAccumulator
    /// The layer's maxima, where the units read them.
    let maxima: SharedRows<Float>
    let repeats: Int

    func run(into report: inout B.Report) {
        let sets = SeenSets(layer), units = layer.units, g = layer.index.dictionary.subgroupCount
        var engine: LayerSnapshot?
        let whole = B.time(repeats) {
            let out = benchBuffers(layer)
            B.perUnit(units) { u in
                var scratch: [UInt64] = []
                layer.stageOne(unit: u, column: column(u), sets: sets, scratch: &scratch, into: out)
            }
            engine = out.finished(layer)
        }
        let ranking = B.time(repeats) {
            B.perUnit(units) { u in
                var ranks = CategoryRanks(), scratch: [UInt64] = []
                for c in sets.categoryImages.indices { ranks.rank(category: c, column: column(u), sets: sets, scratch: &scratch) }
            }
        }
        let reference = engineSums(sets: sets)
        var loops = [Double](repeating: 0, count: units * g), double = loops, single = loops
        var t = (weights: 0.0, loops: 0.0, dgemm: 0.0, sgemm: 0.0)
        var weights: (category: Int, w: SharedRows<Double>, w64: [Double], w32: [Float])?
        for category in sets.categoryImages.indices {
            if weights?.category != sets.sameImagesAs[category] {
                weights = nil // frees the previous matrices first
                var w = SharedRows<Double>(repeating: 0, count: 0)
                t.weights += B.time(repeats) { w = weightsMatrix(category: category, sets: sets) }
                weights = (sets.sameImagesAs[category], w, w.array, w.pointer.map(Float.init))
            }
            let (_, w, w64, w32) = weights!
            let y64: [Double] = labelMatrix(category: category, sets: sets), y32: [Float] = labelMatrix(category: category, sets: sets)
            t.loops += B.time(repeats) { scoreLoops(category: category, w: w, sets: sets, into: &loops) }
            t.dgemm += B.time(repeats) { product(category: category, w: w64, y: y64, into: &double) }
            t.sgemm += B.time(repeats) { product(category: category, w: w32, y: y32, into: &single) }
        }
        var probabilities = 0.0
        let fromProduct = self.probabilities(double, sets: sets, seconds: &probabilities)
        report.timings += [
            .init(name: "stage I whole, engine loops", seconds: whole),
            .init(name: "stage I ranking only", seconds: ranking),
            .init(name: "stage I weights matrices (ranking + R·MS')", seconds: t.weights),
            .init(name: "stage I score part, loops over W", seconds: t.loops),
            .init(name: "stage I score part, dgemm", seconds: t.dgemm),
            .init(name: "stage I score part, sgemm", seconds: t.sgemm),
            .init(name: "stage I whole, weights + dgemm + P", seconds: t.weights + t.dgemm + probabilities),
        ]
        report.agreements += [B.agreement("stage I loops over W vs engine", loops, reference),
                              withProbabilities(B.agreement("stage I dgemm vs engine", double, reference), fromProduct, engine!),
                              withProbabilities(B.agreement("stage I sgemm vs engine", single, reference),
                                                self.probabilities(single, sets: sets, seconds: &probabilities), engine!)]
    }

    func column(_ u: Int) -> UnsafePointer<Float> { UnsafePointer(maxima.pointer.baseAddress! + u * layer.index.imageCount) }

    /// The sums per subgroup `stageOneScores` makes, [C, G].
    func engineSums(sets: SeenSets) -> [Double] {
        let g = layer.index.dictionary.subgroupCount
        let out = SharedRows<Double>(repeating: 0, count: layer.units * g)
        B.perUnit(layer.units) { u in
            var ranks = CategoryRanks(), scratch: [UInt64] = []
            for c in sets.categoryImages.indices {
                guard let (score, _) = layer.stageOneScores(category: c, column: column(u), sets: sets, ranks: &ranks,
                                                            scratch: &scratch) else { continue }
                for s in 0..<g where layer.index.dictionary.subgroupCategory[s] == Int32(c) { out.pointer[u * g + s] = score[s] }
            }
        }
        return out.array
    }

    /// W [C × N] of `category`'s images: R·MS' as `stageOneScores` computes it (0 for a unit
    /// whose maxima do not vary).
    func weightsMatrix(category: Int, sets: SeenSets) -> SharedRows<Double> {
        let members = sets.categoryImages[category], n = members.count
        let w = SharedRows<Double>(repeating: 0, count: layer.units * n)
        B.perUnit(layer.units) { u in
            let column = column(u)
            guard let (lo, hi) = RankedScores.range(of: column, at: members), hi > lo else { return }
            var ranks = CategoryRanks(), scratch: [UInt64] = []
            ranks.rank(category: category, column: column, sets: sets, scratch: &scratch)
            let span = Double(hi) - Double(lo)
            for position in 0..<n {
                let normalised = (Double(column[Int(members[position])]) - Double(lo)) / span
                w.pointer[u * n + position] = ranks.ranks[position] * normalised
            }
        }
        return w
    }

    /// The engine's score loop over W: each weight added to its image's subgroup, in image order.
    func scoreLoops(category: Int, w: SharedRows<Double>, sets: SeenSets, into sums: inout [Double]) {
        let labels = sets.categoryLabels[category], n = labels.count, g = layer.index.dictionary.subgroupCount
        let out = SharedRows<Double>(repeating: 0, count: layer.units * g)
        B.perUnit(layer.units) { u in
            for position in 0..<n { out.pointer[u * g + Int(labels[position])] += w.pointer[u * n + position] }
        }
        for s in 0..<g where layer.index.dictionary.subgroupCategory[s] == Int32(category) {
            for u in 0..<layer.units { sums[u * g + s] = out.pointer[u * g + s] }
        }
    }

    /// The category's 0/1 label matrix Y [N × S_g] (row: image, column: subgroup within the category).
    func labelMatrix<T: GemmScalar>(category: Int, sets: SeenSets) -> [T] {
        let labels = sets.categoryLabels[category], subgroups = layer.index.dictionary.subgroupsOfCategory[category]
        var y = [T](repeating: 0, count: labels.count * subgroups.count)
        for (position, label) in labels.enumerated() { y[position * subgroups.count + subgroups.firstIndex(of: Int(label))!] = 1 }
        return y
    }

    /// W · Y, scattered into `sums` [C, G].
    func product<T: GemmScalar>(category: Int, w: [T], y: [T], into sums: inout [Double]) {
        let g = layer.index.dictionary.subgroupCount, subgroups = layer.index.dictionary.subgroupsOfCategory[category]
        let k = subgroups.count, n = y.count / k
        var c = [T](repeating: 0, count: layer.units * k)
        T.gemm(w, y, &c, m: layer.units, k: n, n: k)
        for u in 0..<layer.units { for (j, s) in subgroups.enumerated() { sums[u * g + s] = Double(c[u * k + j]) } }
    }

    /// The snapshot's P from sums [C, G] (as `stageOneProbabilities` makes them), timed.
    func probabilities(_ sums: [Double], sets: SeenSets, seconds: inout Double) -> LayerSnapshot {
        let g = layer.index.dictionary.subgroupCount
        var snap: LayerSnapshot?
        seconds = B.time(repeats) {
            let out = benchBuffers(layer)
            B.perUnit(layer.units) { u in
                let row = Array(sums[(u * g)..<((u + 1) * g)])
                for c in sets.categoryImages.indices { _ = layer.stageOneProbabilities(unit: u, category: c, scores: row, sets: sets, into: out) }
            }
            snap = out.finished(layer)
        }
        return snap!
    }

    func withProbabilities(_ a: B.Agreement, _ snap: LayerSnapshot, _ engine: LayerSnapshot) -> B.Agreement {
        var a = a
        a.probabilitiesDiffering = zip(snap.globalProb, engine.globalProb).filter { $0.bitPattern != $1.bitPattern }.count
            + zip(snap.globalBiased, engine.globalBiased).filter { $0 != $1 }.count
        return a
    }
}
