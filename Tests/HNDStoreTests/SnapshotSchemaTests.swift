import CHDF5
import Foundation
import Testing
@testable import HNDEngine
@testable import HNDStore

/// A snapshot of 3 units of `taxonomy` (2 subgroups, 2 concepts, 1 region) whose every dataset
/// holds distinct values.
func distinctSnapshot(step: Int64, seen: Int = 3) -> LayerSnapshot {
    var s = LayerSnapshot(layer: "layer4.1.conv1", imagesSeen: seen, imagesTotal: 3, units: 3,
                          subgroupCount: 2, conceptCount: 2, topImageCount: 2)
    s.run = "run-\(step)"
    s.step = step
    s.timeUnix = 1.7e9 + Double(step)
    s.threshold = [0.5, 1.5, 2.5]
    s.globalProb = [0.6, 0.4, 0.3, 0.7, 0.5, 0.5]
    s.globalBiased = [1, 0, 0, 1, 0, 0]
    s.iou = [0.1, 0.2, 0.3, 0.01, 0, 0.05]
    s.region = [0, 0, -1]
    s.localProb = [0.9, 0.1, 0.2, 0.8, 0, 0]
    s.localPaired = [1, 0, 0, 1, 0, 0]
    s.netdissectConcept = [1, 0, -1]
    s.topImages = [2, 0, 1, -1, 0, 1]
    if s.complete {  // partial passes skip the significance tests (NaN p-values, no flags)
        s.significanceTested = true
        s.globalP = [0.001, 0.9, 1, 0.04, 0.5, 0.6]
        s.globalSignificant = [1, 0, 0, 1, 0, 0]
        s.localP = [0.01, 1, 1, 0.2, 1, 1]
        s.localSignificant = [1, 0, 0, 0, 0, 0]
    }
    return s
}

/// A snapshot with the NaN p-values of a skipped test left out, so that == compares the rest.
func withoutUntestedP(_ s: LayerSnapshot) -> LayerSnapshot {
    var s = s
    if !s.significanceTested, s.globalP.allSatisfy(\.isNaN), s.localP.allSatisfy(\.isNaN) { s.globalP = []; s.localP = [] }
    return s
}

func snapshotFile(_ snapshots: [LayerSnapshot]) throws -> String {
    let path = temporaryDirectory() + "/s.h5"
    try SnapshotFile(path: path, dictionary: taxonomy).append(snapshots)
    return path
}

/// A snapshot file of one row written by the writer, except that `replace` writes dataset `name`
/// of its index instead (inside the index file, as files written before row files did).
func snapshotFile(replacing name: String, _ replace: (HDF5File, String) throws -> Void) throws -> String {
    let path = try snapshotFile([distinctSnapshot(step: 1)])
    let file = try HDF5File.open(path, writable: true)
    let at = SnapshotSchema.group(ofLayer: distinctSnapshot(step: 1).layer) + "/" + name
    #expect(H5Ldelete(file.file.id, at, chdf5_p_default()) >= 0)
    try replace(file, at)
    return path
}

@Suite struct SnapshotSchemaTests {
    @Test func whatIsWrittenReadsBackAsTheSameSnapshot() throws {
        let first = distinctSnapshot(step: 10, seen: 2), second = distinctSnapshot(step: 20)
        let reader = try SnapshotReader(path: try snapshotFile([first, second]))
        let t = reader.taxonomy
        #expect(t.categories == taxonomy.categories && t.subgroups == taxonomy.subgroups && t.regions == taxonomy.regions)
        #expect(t.concepts == taxonomy.concepts && t.subgroupCategory == taxonomy.subgroupCategory)
        #expect(t.conceptRegion == taxonomy.conceptRegion && t.conceptType == taxonomy.conceptType)
        let layer = try reader.layer(first.layer)
        #expect(layer.units == 3 && layer.topImageCount == 2)
        #expect(layer.rows.map(\.step) == [10, 20] && layer.rows.map(\.complete) == [false, true])
        #expect(layer.rows.map(\.run) == ["run-10", "run-20"] && layer.rows.map(\.imagesSeen) == [2, 3])
        #expect(layer.rows.map(\.timeUnix) == [first.timeUnix, second.timeUnix])
        #expect(try withoutUntestedP(reader.snapshot(layer, row: 0, detail: .everything)) == withoutUntestedP(first))
        #expect(try reader.snapshot(layer, row: 1, detail: .everything) == second)
        // The counts read only labels and flags; the rest keeps the defaults.
        let counted = try reader.snapshot(layer, row: 1, detail: .counted)
        #expect(counted.region == second.region && counted.localPaired == second.localPaired)
        #expect(counted.globalBiased == second.globalBiased && counted.netdissectConcept == second.netdissectConcept)
        #expect(counted.globalProb.allSatisfy { $0 == 0 } && counted.threshold.allSatisfy(\.isNaN))
        #expect(SnapshotSummary(counted, taxonomy: reader.taxonomy) == SnapshotSummary(second, taxonomy: reader.taxonomy))
    }

    @Test func theFileHoldsExactlyTheSchemasDatasets() throws {
        let path = try snapshotFile([distinctSnapshot(step: 1), distinctSnapshot(step: 2)])
        let file = try HDF5File.open(path)
        let group = SnapshotSchema.group(ofLayer: "layer4.1.conv1")
        #expect(try file.members(of: group).sorted() == SnapshotSchema.datasets.map(\.name).sorted())
        let extent: [SnapshotAxis: Int] = [.units: 3, .subgroups: 2, .concepts: 2, .topImages: 2]
        let sizes: [SnapshotElement: Int] = [.int64: 8, .int32: 4, .uint8: 1, .float32: 4, .float64: 8]
        for dataset in SnapshotSchema.datasets {
            let at = group + "/" + dataset.name
            #expect(try file.shape(of: at) == [2] + dataset.axes.map { extent[$0]! }, "\(dataset.name)")
            #expect(try file.typeClass(of: at) == dataset.element.typeClass, "\(dataset.name)")
            if let size = sizes[dataset.element] { #expect(try file.elementSize(of: at) == size, "\(dataset.name)") }
            #expect(!dataset.meaning.isEmpty)
        }
        #expect(try file.stringAttribute("format") == SnapshotSchema.format)
        #expect(try file.numericAttribute("version", as: Int32.self) == SnapshotSchema.version)
    }

    @Test func aDatasetOfTheWrongKindOrShapeIsNamed() throws {
        let wrongKind = try snapshotFile(replacing: "region") { file, at in
            try file.createDataset(at, shape: [1, 3], values: [Float](repeating: 0, count: 3))
        }
        #expect { try SnapshotReader(path: wrongKind).layer("layer4.1.conv1") } throws: {
            "\($0)" == "\(wrongKind): /layers/layer4.1.conv1/region: holds the wrong kind of values; expected int32"
        }
        let wrongShape = try snapshotFile(replacing: "iou") { file, at in
            try file.createDataset(at, shape: [1, 3, 3], values: [Float](repeating: 0, count: 9))
        }
        #expect { try SnapshotReader(path: wrongShape).layer("layer4.1.conv1") } throws: {
            "\($0)" == "\(wrongShape): /layers/layer4.1.conv1/iou: shape [1, 3, 3], expected [1, 3, 2] [T, C, L]"
        }
    }

    @Test func labelsOutsideTheTaxonomyAreNamed() throws {
        let path = try snapshotFile(replacing: "netdissect_concept") { file, at in
            try file.createDataset(at, shape: [1, 3], values: [Int32(0), 7, -1])
        }
        let reader = try SnapshotReader(path: path)
        let layer = try reader.layer("layer4.1.conv1")
        #expect { try reader.snapshot(layer, row: 0, detail: .counted) } throws: {
            "\($0)" == "\(path): /layers/layer4.1.conv1/netdissect_concept: row 0, unit 1: 7 is not −1 or one of the 2 concepts"
        }
    }

    @Test func aFileWithoutTopImagesReadsWithNone() throws {
        let path = try snapshotFile(replacing: "top_images") { _, _ in }
        let reader = try SnapshotReader(path: path)
        let layer = try reader.layer("layer4.1.conv1")
        #expect(layer.topImageCount == 0)
        let s = try reader.snapshot(layer, row: 0, detail: .everything)
        #expect(s.topImages.isEmpty && s.threshold == distinctSnapshot(step: 1).threshold)
    }
}
