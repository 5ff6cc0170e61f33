import Testing
@testable import HNDEngine
@testable import HNDStore

/// The counts of `SnapshotSummary` on a snapshot small enough to count by hand (`distinctSnapshot`:
/// unit 0 paired with left_eye and biased toward female, unit 1 with eyeglasses and male, unit 2
/// neither; the baseline labels unit 0 eyeglasses and unit 1 left_eye).
@Suite struct SnapshotSummaryTests {
    typealias Count = SnapshotSummary.Count

    @Test func countsByHand() {
        let s = SnapshotSummary(distinctSnapshot(step: 1), taxonomy: taxonomy)
        #expect((s.units, s.interpretable, s.biased, s.paired, s.localised, s.netdissect) == (3, 2, 2, 2, 2, 2))
        #expect(s.coverage == SnapshotSummary.Coverage(pairedAndBiased: 2, pairedOnly: 0, biasedOnly: 0))
        #expect(s.unitsPerRegion == [Count(name: "eye", units: 2)])
        #expect(s.conceptUnits == [Count(name: "eyeglasses", units: 1), Count(name: "left_eye", units: 1)])
        #expect(s.netdissectConceptUnits == [Count(name: "eyeglasses", units: 1), Count(name: "left_eye", units: 1)])
        #expect(s.subgroupUnits == [Count(name: "female", units: 1), Count(name: "male", units: 1)])
        #expect(s.categoryUnits == [Count(name: "gender", units: 2)])
        #expect(s.typeUnits == [Count(name: "part", units: 1), Count(name: "attribute", units: 1), Count(name: "action unit", units: 0)])
    }

    @Test func coverageSplitsPairedFromBiased() {
        var snapshot = distinctSnapshot(step: 1)
        snapshot.localPaired = [0, 0, 0, 1, 1, 0]   // unit 0 no longer paired; unit 2 paired, not biased
        let s = SnapshotSummary(snapshot, taxonomy: taxonomy)
        #expect(s.coverage == SnapshotSummary.Coverage(pairedAndBiased: 1, pairedOnly: 1, biasedOnly: 1))
        #expect((s.interpretable, s.biased, s.paired) == (3, 2, 2))
    }

    @Test func pairedUnitsSplitByTheirStrongestBias() {
        var snapshot = distinctSnapshot(step: 1)
        #expect(SnapshotSummary.pairedUnitsByStrongestBias(snapshot, taxonomy: taxonomy) == [[1, 0, 0], [0, 1, 0]])
        // Biased toward both subgroups: the larger margin over 1/2 + 0.05 wins; none: the last column.
        snapshot.globalBiased = [1, 1, 0, 0, 0, 0]
        snapshot.globalProb = [0.56, 0.6, 0.3, 0.7, 0.5, 0.5]
        snapshot.localPaired = [1, 0, 0, 1, 0, 0]
        #expect(SnapshotSummary.pairedUnitsByStrongestBias(snapshot, taxonomy: taxonomy) == [[0, 1, 0], [0, 0, 1]])
        #expect(SnapshotSummary.strongestBias(snapshot, unit: 0, thresholds: taxonomy.biasThresholds) == 1)
        #expect(taxonomy.biasThresholds == [0.55, 0.55] && taxonomy.biasThreshold(category: 0) == 0.55)
    }

    @Test func thePreviousPassIsTheLastCompleteOneOfAnotherStep() {
        var history = PassHistory()
        func summary(interpretable units: Int) -> SnapshotSummary {
            var snapshot = distinctSnapshot(step: 0)
            snapshot.globalBiased = [UInt8](repeating: 0, count: 6)
            snapshot.localPaired = (0..<3).flatMap { $0 < units ? [1, 0] : [0, 0] }
            return SnapshotSummary(snapshot, taxonomy: taxonomy)
        }
        #expect(history.record(step: 0, complete: true, summary: summary(interpretable: 1)) == [])
        #expect(history.previous(ofStep: 0) == nil)
        // A pass in progress is compared with the last complete one.
        #expect(history.record(step: 10, complete: false, summary: summary(interpretable: 2)).first == "interpretable 1 → 2 (+1)")
        #expect(history.record(step: 10, complete: true, summary: summary(interpretable: 3)).first == "interpretable 1 → 3 (+2)")
        // The same step again (a pass written twice) still compares with step 0.
        #expect(history.record(step: 10, complete: true, summary: summary(interpretable: 2)).first == "interpretable 1 → 2 (+1)")
        #expect(history.previous(ofStep: 10)?.step == 0)
        #expect(history.previous(ofStep: 20)?.step == 10)
        #expect(history.record(step: 20, complete: false, summary: summary(interpretable: 0)).first == "interpretable 2 → 0 (-2)")
    }
}
