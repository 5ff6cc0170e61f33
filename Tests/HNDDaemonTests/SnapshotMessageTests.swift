import Testing
@testable import HNDDaemon
@testable import HNDEngine
import HNDWire

/// The significance arrays on the wire: carried for a tested snapshot, left empty for a partial one.
@Suite struct SnapshotMessageTests {
    let taxonomy = FaceDictionary(
        categories: ["gender"], subgroups: ["female", "male"], subgroupCategory: [0, 0],
        regions: ["eye"], concepts: ["left_eye", "eyeglasses"], conceptRegion: [0, 0], conceptType: [0, 1],
        globalLabel: [], localLabel: [], ellipse: [], maskSize: 4)

    func snapshot(tested: Bool) -> LayerSnapshot {
        var s = LayerSnapshot(layer: "l", imagesSeen: tested ? 5 : 4, imagesTotal: 5, units: 2, subgroupCount: 2,
                              conceptCount: 2, topImageCount: 0)
        s.globalBiased = [1, 0, 0, 1]
        s.localPaired = [0, 1, 0, 0]
        if tested {
            s.significanceTested = true
            s.globalP = [0.001, 1, 0.7, 0.02]
            s.globalSignificant = [1, 0, 0, 1]
            s.localP = [1, 0.03, 1, 1]
            s.localSignificant = [0, 1, 0, 0]
        }
        return s
    }

    @Test func testedSnapshotsCarryTheirPValues() throws {
        let s = snapshot(tested: true)
        let message = Hndd_Snapshot(s, taxonomy: Hndd_Taxonomy(taxonomy))
        try message.validate()
        #expect(LayerSnapshot(message) == s)
        #expect(SnapshotSummary(LayerSnapshot(message), taxonomy: taxonomy).significant?.biased == 2)
    }

    @Test func partialSnapshotsSendNoneAndSayTheySkipped() throws {
        let message = Hndd_Snapshot(snapshot(tested: false), taxonomy: Hndd_Taxonomy(taxonomy))
        #expect(message.globalP.isEmpty && message.localSignificant.isEmpty)
        try message.validate()
        let back = LayerSnapshot(message)
        #expect(!back.significanceTested)
        #expect(SnapshotSummary(back, taxonomy: taxonomy).significant == nil)
        var wrong = Hndd_Snapshot(snapshot(tested: true), taxonomy: Hndd_Taxonomy(taxonomy))
        wrong.localP = [1]
        #expect(throws: WireError.self) { try wrong.validate() }
    }
}
