/// Stage I of one unit (docs/3-numbers.md): rank-weighted scores per global category over D_g,
/// normalised within the category, and their tests.
extension LayerAccumulator {
    /// Writes unit `u`'s P and "biased" flags for every category (and its raw p-values when
    /// `out` holds the tests). `column` is the unit's maxima over all images.
    func stageOne(unit u: Int, column: UnsafePointer<Float>, sets: SeenSets, scratch: inout [UInt64],
                  into out: SnapshotBuffers) {
        var ranks = CategoryRanks()
        for category in sets.categoryImages.indices {
            guard let scores = stageOneScores(category: category, column: column, sets: sets, ranks: &ranks,
                                              scratch: &scratch) else { continue }
            let (probabilities, total) = stageOneProbabilities(unit: u, category: category, scores: scores.score,
                                                               sets: sets, into: out)
            if let tests = out.significance, total > 0 {
                testStageOne(unit: u, category: category, counts: sets.subgroupCounts, weights: scores.weights,
                             probabilities: probabilities, into: tests)
                if let change = tests.change, let (lo, hi) = RankedScores.range(of: column, at: sets.categoryImages[category]) {
                    testChange(unit: u, category: category, sets: sets, into: change,
                               now: StageOneColumn(column: column, ranks: ranks.ranks, lo: lo, hi: hi, total: total, probabilities: probabilities))
                }
            }
        }
    }

    /// One category's weights w = R·MS' over its images and their sums per subgroup (global
    /// index, 0 outside the category); nil when the category has no images or the unit's maxima
    /// over them do not vary.
    func stageOneScores(category: Int, column: UnsafePointer<Float>, sets: SeenSets, ranks: inout CategoryRanks,
                        scratch: inout [UInt64]) -> (score: [Double], weights: PermutationNull.Weights)? {
        let members = sets.categoryImages[category]
        guard let (lo, hi) = RankedScores.range(of: column, at: members), hi > lo else { return nil }
        let labels = sets.categoryLabels[category]
        var score = [Double](repeating: 0, count: index.dictionary.subgroupCount)
        let span = Double(hi) - Double(lo)
        ranks.rank(category: category, column: column, sets: sets, scratch: &scratch)
        var weights = PermutationNull.Weights()
        for position in members.indices {
            let normalised = (Double(column[Int(members[position])]) - Double(lo)) / span
            let w = ranks.ranks[position] * normalised
            score[Int(labels[position])] += w
            weights.add(w)
        }
        return (score, weights)
    }

    /// P of the category's subgroups from their summed weights (each over its N_t, then
    /// normalised over the category), written with the "biased" flags; returns P (global index)
    /// and the normaliser.
    func stageOneProbabilities(unit u: Int, category: Int, scores: [Double], sets: SeenSets,
                               into out: SnapshotBuffers) -> (probabilities: [Double], total: Double) {
        let dictionary = index.dictionary, g = dictionary.subgroupCount
        var score = scores, total = 0.0
        for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
            score[s] = sets.subgroupCounts[s] > 0 ? score[s] / Double(sets.subgroupCounts[s]) : 0
            total += score[s]
        }
        for s in 0..<g where dictionary.subgroupCategory[s] == Int32(category) {
            let p = total > 0 ? score[s] / total : 0
            score[s] = p
            out.globalProb[u * g + s] = Float(p)
            out.globalBiased[u * g + s] = StageRules.isBiased(p, subgroups: sets.subgroupsPerCategory[category]) ? 1 : 0
        }
        return (score, total)
    }
}

/// One unit's average ranks over a category's images. Categories usually label the same images:
/// those share one ranking, made once.
struct CategoryRanks {
    /// Rank of each position of the last ranked image list (may be longer than it).
    private(set) var ranks: [Double] = []
    /// The category (`sameImagesAs`) whose images were last ranked; −1 none.
    private var ranked = -1

    /// Makes `ranks` those of `category`'s images, ranking them unless they are those last ranked.
    mutating func rank(category: Int, column: UnsafePointer<Float>, sets: SeenSets, scratch: inout [UInt64]) {
        guard ranked != sets.sameImagesAs[category] else { return }
        let members = sets.categoryImages[category]
        if ranks.count < members.count { ranks = [Double](repeating: 0, count: members.count) }
        RankedScores.forEachAverageRank(values: column, members: members, scratch: &scratch) { position, rank in
            ranks[position] = rank
        }
        ranked = sets.sameImagesAs[category]
    }
}
