import HNDTestSupport
import Testing
@testable import HNDEngine

/// A dictionary small enough to compute by hand: one category (2 subgroups), one region with two
/// concepts, mask 4×4.
func tinyDictionary(images n: Int, subgroup: [Int32], present: [[Int8]], ellipse: (Float, Float, Float, Float, Float) = (0.5, 0.5, 0.02, 0, 0.02)) -> FaceDictionary {
    var ellipses: [Float] = []
    for image in 0..<n {
        for c in 0..<2 {
            if present[image][c] == 1 {
                ellipses += [ellipse.0, ellipse.1, ellipse.2, ellipse.3, ellipse.4]
            } else {
                ellipses += [.nan, .nan, .nan, .nan, .nan]
            }
        }
    }
    return FaceDictionary(
        categories: ["gender"], subgroups: ["female", "male"], subgroupCategory: [0, 0],
        regions: ["eye"], concepts: ["left_eye", "eyeglasses"], conceptRegion: [0, 0], conceptType: [0, 1],
        globalLabel: subgroup, localLabel: present.flatMap { $0 }, ellipse: ellipses, maskSize: 4)
}

func add(_ layer: inout LayerAccumulator, ids: [Int64], maps: [[Float]], units: Int = 1, h: Int = 1, w: Int = 1) throws {
    let flat = maps.flatMap { $0 }
    try flat.withUnsafeBufferPointer { values throws(BatchError) in
        try layer.add(imageIDs: ids, units: units, height: h, width: w, values: values)
    }
}

@Suite struct StageITests {
    @Test func averageRanksOnTies() {
        let values: [Float] = [3, 1, 3, 2, 3]
        var ranks = [Double](repeating: 0, count: 5)
        var scratch: [UInt64] = []
        values.withUnsafeBufferPointer { v in
            RankedScores.forEachAverageRank(values: v.baseAddress!, members: [0, 1, 2, 3, 4], scratch: &scratch) { ranks[$0] = $1 }
        }
        #expect(ranks == [4, 1, 4, 2, 4])
    }

    @Test func rankWeightedProbabilitiesByHand() throws {
        // MS = 1, 2, 3, 4; labels female, female, male, male. MS' = 0, 1/3, 2/3, 1; ranks 1…4.
        // CS_female = (1·0 + 2·1/3)/2 = 1/3, CS_male = (3·2/3 + 4·1)/2 = 3 → P = 0.1, 0.9.
        let d = tinyDictionary(images: 4, subgroup: [0, 0, 1, 1], present: Array(repeating: [-1, -1], count: 4))
        var layer = LayerAccumulator(layer: "x", index: DictionaryIndex(d))
        try add(&layer, ids: [3, 0, 2, 1], maps: [[4], [1], [3], [2]])
        let s = layer.snapshot()
        #expect(abs(Double(s.globalProb[0]) - 0.1) < 1e-6)
        #expect(abs(Double(s.globalProb[1]) - 0.9) < 1e-6)
        #expect(s.globalBiased == [0, 1])
        #expect(s.isInterpretable(unit: 0))
    }

    @Test func constantMaximaGiveZeroProbabilities() throws {
        let d = tinyDictionary(images: 3, subgroup: [0, 1, 1], present: Array(repeating: [-1, -1], count: 3))
        var layer = LayerAccumulator(layer: "x", index: DictionaryIndex(d))
        try add(&layer, ids: [0, 1, 2], maps: [[2], [2], [2]])
        let s = layer.snapshot()
        #expect(s.globalProb == [0, 0])
        #expect(s.globalBiased == [0, 0])
        #expect(!s.isInterpretable(unit: 0))
    }

    @Test func unlabelledImagesAreOutsideTheCategory() throws {
        // Image 2 is not labelled: only images 0 (female, MS 5) and 1 (male, MS 1) count.
        let d = tinyDictionary(images: 3, subgroup: [0, 1, -1], present: Array(repeating: [-1, -1], count: 3))
        var layer = LayerAccumulator(layer: "x", index: DictionaryIndex(d))
        try add(&layer, ids: [0, 1, 2], maps: [[5], [1], [100]])
        let s = layer.snapshot()
        // MS' = 1, 0; ranks 2, 1: CS_female = 2, CS_male = 0.
        #expect(s.globalProb == [1, 0])
    }

    @Test func thresholdsAreInclusiveForBiasAndStrictForPairing() {
        #expect(StageRules.isBiased(0.55, subgroups: 2) == (0.55 >= 1.0 / 2 + 0.05))
        #expect(StageRules.isBiased(0.30000000000000004, subgroups: 4))
        #expect(!StageRules.isBiased(0.29, subgroups: 4))
        #expect(StageRules.isBiased(1.0 / 2 + 0.05, subgroups: 2))
        #expect(!StageRules.isPaired(1.5 / 4, conceptsInRegion: 4))
        #expect(StageRules.isPaired(1.5 / 4 + 1e-12, conceptsInRegion: 4))
    }
}

@Suite struct QuantileTests {
    /// numpy's linear quantile on a sorted array, written out directly.
    func numpyQuantile(_ sorted: [Float], _ p: Double) -> Float {
        let virtual = Double(sorted.count - 1) * p
        let lo = Int(virtual.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        let t = virtual - Double(lo)
        let diff = sorted[hi] - sorted[lo]
        return t >= 0.5 ? sorted[hi] - diff * Float(1 - t) : sorted[lo] + diff * Float(t)
    }

    @Test(arguments: [1, 2, 7, 199, 200, 201, 1000, 4321])
    func topValuesGiveNumpysQuantile(count: Int) {
        var generator = SplitMix(seed: UInt64(count))
        let rule = QuantileRule(upperTail: 0.005)
        // Many ties (rounded values) and negative values.
        let values = (0..<count).map { _ in Float(Int(generator.next() % 50)) - 20 + (generator.next() % 3 == 0 ? 0.5 : 0) }
        var top = TopValues(capacity: rule.valuesNeeded(population: count))
        for v in values { top.offer(v) }
        top.compact()
        let got = rule.value(population: count, largestDescending: top.largest(rule.valuesNeeded(population: count)))
        #expect(got == numpyQuantile(values.sorted(), 0.995))
        // The same by selection, without sorting the top-k.
        #expect(top.quantile(rule, population: count) == got)
    }

    @Test func radixRanksEqualSortedRanks() {
        var generator = SplitMix(seed: 4)
        // Ties, both zeros, negative values, large and tiny magnitudes.
        let pool: [Float] = [-0.0, 0, 1, -1, 2.5, -2.5, 1e-30, -1e30, 3e38, .leastNonzeroMagnitude]
        let values = (0..<3000).map { _ in pool[Int(generator.next() % UInt64(pool.count))] }
        let members = (0..<Int32(3000)).filter { _ in generator.next() % 3 != 0 }
        var ranks = [Double](repeating: 0, count: members.count)
        var scratch: [UInt64] = []
        values.withUnsafeBufferPointer { v in
            RankedScores.forEachAverageRank(values: v.baseAddress!, members: members, scratch: &scratch) { ranks[$0] = $1 }
        }
        for (position, image) in members.enumerated() {
            let v = values[Int(image)]
            let below = members.filter { values[Int($0)] < v }.count, equal = members.filter { values[Int($0)] == v }.count
            #expect(ranks[position] == Double(2 * below + equal + 1) / 2)
        }
    }

    @Test func partialQuantilesNeedNoMoreThanTheFinal() {
        let rule = QuantileRule(upperTail: 0.005)
        var previous = 0
        for n in 1...5000 {
            let needed = rule.valuesNeeded(population: n)
            #expect(needed >= previous)
            previous = needed
        }
    }

    @Test func aTopKStateOfTheFormerTwoKBufferRestores() {
        // 19 values of a k = 10 top-k, as the former buffer of 2k could hold them (this one holds
        // at most 15): cut back to the 10 largest, the bound raised to the 10th.
        let values: [Float] = (0..<19).map { Float(($0 * 7) % 19) } // 0 … 18, shuffled
        let restored = TopValues.restore(capacity: 10, values: values, lowerBound: 2)
        #expect(restored?.values.sorted() == (9...18).map(Float.init))
        #expect(restored?.lowerBound == 9)
        // Up to the buffer's own size, the values are kept as they were.
        let few = Array(values.prefix(14))
        #expect(TopValues.restore(capacity: 10, values: few, lowerBound: 2)?.values == few)
        // No version kept 2k values.
        #expect(TopValues.restore(capacity: 10, values: values + [1], lowerBound: 2) == nil)
    }

    @Test func lowerBoundOnlyRisesAndStaysBelowTheKthLargest() {
        var generator = SplitMix(seed: 9)
        var top = TopValues(capacity: 10)
        var all: [Float] = []
        var bound = -Float.infinity
        for _ in 0..<500 {
            let v = Float(generator.next() % 1000)
            all.append(v)
            top.offer(v)
            #expect(top.lowerBound >= bound)
            bound = top.lowerBound
            if all.count >= 10 { #expect(bound <= all.sorted(by: >)[9]) }
        }
        top.compact()
        #expect(top.largest(10) == Array(all.sorted(by: >).prefix(10)))
    }
}
