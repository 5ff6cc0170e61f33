import HNDTestSupport
import Testing
@testable import HNDEngine

/// A pass split by image over several accumulators (daemons), merged, against one accumulator fed
/// every image: the same state, so the same snapshot, bit for bit.
@Suite struct MergeTests {
    /// Every array of two snapshots equal, bit for bit.
    func expectIdentical(_ a: LayerSnapshot, _ b: LayerSnapshot, _ comment: Comment? = nil) {
        #expect(a.imagesSeen == b.imagesSeen && a.imagesTotal == b.imagesTotal, comment)
        #expect(a.threshold.map(\.bitPattern) == b.threshold.map(\.bitPattern), comment)
        #expect(a.globalProb.map(\.bitPattern) == b.globalProb.map(\.bitPattern), comment)
        #expect(a.globalBiased == b.globalBiased, comment)
        #expect(a.iou.map(\.bitPattern) == b.iou.map(\.bitPattern), comment)
        #expect(a.region == b.region, comment)
        #expect(a.localProb.map(\.bitPattern) == b.localProb.map(\.bitPattern), comment)
        #expect(a.localPaired == b.localPaired, comment)
        #expect(a.netdissectConcept == b.netdissectConcept, comment)
        #expect(a.topImages == b.topImages, comment)
    }

    /// `images` split at random into `shards` disjoint shares, each fed in its own order and
    /// batch size, swept after every batch (so shards drop maps under their own bounds).
    func shardStates(_ random: RandomCase, index: DictionaryIndex, images: [Int], shards: Int, seed: UInt64,
                     options: DissectionOptions) throws -> [LayerAccumulator] {
        var g = SplitMix(seed: seed)
        var shares = [[Int]](repeating: [], count: shards)
        for image in images { shares[Int(g.next() % UInt64(shards))].append(image) }
        return try shares.enumerated().map { s, share in
            var layer = LayerAccumulator(layer: "l", index: index, options: options)
            layer.discardSlack = 0
            try random.feed(&layer, order: share.shuffled(using: &g), batch: 3 + 4 * s)
            return layer
        }
    }

    @Test(arguments: [2, 3])
    func aMergedSplitEqualsOneAccumulatorFedEverything(shards: Int) throws {
        let random = RandomCase(images: 240, units: 6, h: 5, w: 4, seed: 21)
        let index = DictionaryIndex(random.dictionary)
        let options = DissectionOptions(quantile: 0.05)
        var whole = LayerAccumulator(layer: "l", index: index, options: options)
        try random.feed(&whole, order: Array(0..<240), batch: 16)
        let states = try shardStates(random, index: index, images: Array(0..<240), shards: shards, seed: 5, options: options)
        var merged = states[0]
        for state in states.dropFirst() { try merged.merge(state) }
        let expected = whole.snapshot(), snapshot = merged.snapshot()
        #expect(snapshot.complete && snapshot.iou.contains { $0 > 0 })
        expectIdentical(snapshot, expected)
        #expect(merged.maxima == whole.maxima && merged.maskAreaSeen == whole.maskAreaSeen && merged.seen == whole.seen)
        for u in 0..<6 {
            #expect(merged.topValues[u].largest(merged.topValues[u].capacity) == whole.topValues[u].largest(whole.topValues[u].capacity))
        }
        // The portable count reads the merged records the same way.
        let t = merged.stageTwoThresholds()
        #expect(merged.stageTwoCounts(thresholds: t, useKernel: false) == whole.stageTwoCounts(thresholds: t, useKernel: false))
    }

    @Test func statesMergeInAnyOrderAndThroughTheirBytes() throws {
        let random = RandomCase(images: 150, units: 4, h: 3, w: 3, seed: 4)
        let index = DictionaryIndex(random.dictionary)
        let states = try shardStates(random, index: index, images: Array(0..<150), shards: 3, seed: 9, options: .init())
        // As `hndd merge` receives them: each state's bytes, restored, then merged.
        let restored = try states.map { try LayerAccumulator(decoding: $0.encodedState(), index: index, options: .init()) }
        var forward = restored[0], backward = restored[2]
        try forward.merge(restored[1]); try forward.merge(restored[2])
        try backward.merge(restored[1]); try backward.merge(restored[0])
        var whole = LayerAccumulator(layer: "l", index: index)
        try random.feed(&whole, order: Array(0..<150), batch: 150)
        expectIdentical(forward.snapshot(), whole.snapshot(), "first to last")
        expectIdentical(backward.snapshot(), whole.snapshot(), "last to first")
        // And the merged state is a state like any other: it serialises and restores.
        let again = try LayerAccumulator(decoding: forward.encodedState(), index: index, options: .init())
        expectIdentical(again.snapshot(), whole.snapshot(), "restored after merging")
    }

    @Test func partialShardsMergeIntoThePartialSnapshotOfTheirImagesAndKeepStreaming() throws {
        let random = RandomCase(images: 200, units: 3, h: 4, w: 4, seed: 6)
        let index = DictionaryIndex(random.dictionary)
        var g = SplitMix(seed: 2)
        let order = Array(0..<200).shuffled(using: &g)
        let first = Array(order.prefix(130))
        let states = try shardStates(random, index: index, images: first, shards: 2, seed: 7, options: .init(quantile: 0.02))
        var merged = states[0]
        try merged.merge(states[1])
        var direct = LayerAccumulator(layer: "l", index: index, options: .init(quantile: 0.02))
        try random.feed(&direct, order: first, batch: 10)
        #expect(!merged.snapshot().complete)
        expectIdentical(merged.snapshot(), direct.snapshot(), "partial")
        // The rest of the pass, fed to the merged state, completes it as it completes the other.
        try random.feed(&merged, order: Array(order.dropFirst(130)), batch: 9)
        try random.feed(&direct, order: Array(order.dropFirst(130)), batch: 9)
        expectIdentical(merged.snapshot(), direct.snapshot(), "completed after the merge")
    }

    @Test func aStateWithoutBatchesMergesAsNothing() throws {
        let random = RandomCase(images: 60, units: 2, h: 2, w: 3, seed: 8)
        let index = DictionaryIndex(random.dictionary)
        var fed = LayerAccumulator(layer: "l", index: index)
        try random.feed(&fed, order: Array(0..<60), batch: 8)
        var empty = LayerAccumulator(layer: "l", index: index)
        try empty.merge(fed)
        var other = fed
        try other.merge(LayerAccumulator(layer: "l", index: index))
        expectIdentical(empty.snapshot(), fed.snapshot())
        expectIdentical(other.snapshot(), fed.snapshot())
    }

    @Test func shardsThatDisagreeAreRefusedAndNothingChanges() throws {
        let random = RandomCase(images: 80, units: 3, h: 3, w: 3, seed: 10)
        let index = DictionaryIndex(random.dictionary)
        var base = LayerAccumulator(layer: "l", index: index)
        try random.feed(&base, order: Array(0..<40), batch: 8)
        let before = base.encodedState()
        func fed(layer: String = "l", options: DissectionOptions = .init(), images: [Int], case c: RandomCase? = nil,
                 index i: DictionaryIndex? = nil) throws -> LayerAccumulator {
            var other = LayerAccumulator(layer: layer, index: i ?? index, options: options)
            try (c ?? random).feed(&other, order: images, batch: 8)
            return other
        }
        let wider = RandomCase(images: 80, units: 4, h: 3, w: 3, seed: 10)
        let larger = RandomCase(images: 80, units: 3, h: 4, w: 3, seed: 10)
        let otherDictionary = RandomCase(images: 81, units: 3, h: 3, w: 3, seed: 10)
        let cases: [(LayerAccumulator, String)] = [
            (try fed(layer: "m", images: Array(40..<80)), "of different layers (l, m)"),
            (try fed(options: .init(quantile: 0.01), images: Array(40..<80)), "different options (quantile 0.005"),
            (try fed(images: Array(40..<80), case: wider), "different unit counts (3, 4)"),
            (try fed(images: Array(40..<80), case: larger), "different map sizes (3×3, 4×3)"),
            (try fed(images: Array(35..<80)), "share 5 images (first: image 35)"),
            (try fed(images: Array(40..<81), case: otherDictionary, index: DictionaryIndex(otherDictionary.dictionary)),
             "different dictionaries (80 images"),
        ]
        for (other, reason) in cases {
            #expect(throws: MergeError.self, "\(reason)") { try base.merge(other) }
            #expect(base.mergeRefusal(other)?.description.contains(reason) == true, "\(String(describing: base.mergeRefusal(other)))")
            #expect(base.encodedState() == before, "a refused merge changed the state (\(reason))")
        }
    }

    @Test func topValuesMergeToTheTopOfTheUnion() {
        var g = SplitMix(seed: 12)
        let values = (0..<5000).map { _ in g.uniform() * 10 - 5 }
        var whole = TopValues(capacity: 300), a = TopValues(capacity: 300), b = TopValues(capacity: 300)
        for (i, v) in values.enumerated() {
            whole.offer(v)
            if i % 3 == 0 { a.offer(v) } else { b.offer(v) }
        }
        whole.compact(); a.compact(); b.compact()
        a.merge(b)
        #expect(a.largest(300) == whole.largest(300))
        #expect(a.lowerBound == whole.lowerBound)
        let rule = QuantileRule(upperTail: 0.05)
        #expect(a.quantile(rule, population: 5000) == whole.quantile(rule, population: 5000))
    }
}
