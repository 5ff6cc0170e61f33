import Foundation
import Testing
@testable import HNDEngine
@testable import HNDStore

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "hndd-store-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

let taxonomy = FaceDictionary(
    categories: ["gender"], subgroups: ["female", "male"], subgroupCategory: [0, 0],
    regions: ["eye"], concepts: ["left_eye", "eyeglasses"], conceptRegion: [0, 0], conceptType: [0, 1],
    globalLabel: [0, 1, -1], localLabel: [1, 0, -1, -1, 1, 1],
    ellipse: [0.3, 0.4, 0.01, 0, 0.01, .nan, .nan, .nan, .nan, .nan,
              .nan, .nan, .nan, .nan, .nan, .nan, .nan, .nan, .nan, .nan,
              0.5, 0.5, 0.02, 0.001, 0.01, 0.5, 0.5, 0.02, 0.001, 0.01],
    maskSize: 8)

func writeDictionary(_ d: FaceDictionary, to path: String, mutate: (HDF5File) throws -> Void = { _ in }) throws {
    let file = try HDF5File.create(path)
    try file.setAttribute("format", "hndd-dictionary")
    try file.setAttribute("version", Int32(1))
    try file.setAttribute("mask_size", Int32(d.maskSize))
    try file.setAttribute("ellipse_chi2", d.ellipseChi2)
    try DictionaryFile.writeTaxonomy(d, to: file)
    try file.createGroup("/images")
    let n = d.imageCount
    try file.createDataset("/images/global_label", shape: [n, d.categoryCount], values: d.globalLabel)
    try file.createDataset("/images/local_label", shape: [n, d.conceptCount], values: d.localLabel)
    try file.createDataset("/images/ellipse", shape: [n, d.conceptCount, 5], values: d.ellipse)
    try mutate(file)
}

@Suite struct StoreTests {
    @Test func dictionaryRoundTrip() throws {
        let dir = temporaryDirectory()
        try writeDictionary(taxonomy, to: dir + "/d.h5")
        let loaded = try DictionaryFile.load(dir + "/d.h5")
        #expect(loaded.concepts == taxonomy.concepts)
        #expect(loaded.subgroups == taxonomy.subgroups)
        #expect(loaded.localLabel == taxonomy.localLabel)
        #expect(loaded.globalLabel == taxonomy.globalLabel)
        #expect(loaded.maskSize == 8 && loaded.ellipseChi2 == 5.991)
    }

    @Test func brokenDictionariesNameFileAndDataset() throws {
        let dir = temporaryDirectory()
        var outOfRange = taxonomy
        outOfRange.globalLabel[1] = 7
        try writeDictionary(outOfRange, to: dir + "/a.h5")
        #expect(throws: StoreError(file: dir + "/a.h5", object: "/images/global_label",
                                   message: "image 1, category 0 (gender): subgroup index 7 is out of range 0..<2 (−1 means unlabelled)")) {
            try DictionaryFile.load(dir + "/a.h5")
        }
        var notFinite = taxonomy
        notFinite.ellipse[2] = .infinity
        try writeDictionary(notFinite, to: dir + "/b.h5")
        #expect { try DictionaryFile.load(dir + "/b.h5") } throws: { ($0 as? StoreError)?.object == "/images/ellipse" }
        // A missing dataset.
        let file = try HDF5File.create(dir + "/c.h5")
        try file.setAttribute("mask_size", Int32(8))
        #expect { try DictionaryFile.load(dir + "/c.h5") } throws: {
            ($0 as? StoreError)?.description == "\(dir)/c.h5: /global/categories: missing dataset"
        }
        FileManager.default.createFile(atPath: dir + "/text.h5", contents: Data("hello".utf8))
        #expect { try DictionaryFile.load(dir + "/text.h5") } throws: { "\($0)".hasSuffix("not an HDF5 file") }
    }

    @Test func snapshotRowsAppendAndReadBack() throws {
        let dir = temporaryDirectory()
        let path = dir + "/s.h5"
        var out: SnapshotFile? = try SnapshotFile(path: path, dictionary: taxonomy)
        var snapshot = LayerSnapshot(layer: "layer4.1.conv1", imagesSeen: 2, imagesTotal: 3, units: 3,
                                     subgroupCount: 2, conceptCount: 2, topImageCount: 2)
        snapshot.run = "r"; snapshot.step = 10
        snapshot.iou = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
        try out!.append([snapshot])
        snapshot.step = 20; snapshot.imagesSeen = 3
        try out!.append([snapshot])
        out = nil // releases the writer's lock
        let file = try HDF5File.open(path)
        #expect(try file.stringAttribute("format") == "hndd-snapshots")
        #expect(try file.read("/layers/layer4.1.conv1/step", as: Int64.self).values == [10, 20])
        #expect(try file.read("/layers/layer4.1.conv1/complete", as: UInt8.self).values == [0, 1])
        #expect(try file.shape(of: "/layers/layer4.1.conv1/iou") == [2, 3, 2])
        #expect(try file.readStrings("/layers/layer4.1.conv1/run") == ["r", "r"])
        #expect(try file.readStrings("/local/concepts") == taxonomy.concepts)
        #expect(try file.numericAttribute("units", on: "/layers/layer4.1.conv1", as: Int64.self) == 3)
        // The index and its row files; no temporary is left behind by the atomic replacement.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["s.h5", "s.h5.rows"])
        #expect(try file.externalFile(of: "/layers/layer4.1.conv1/iou")?.hasSuffix("/s.h5.rows/layer4.1.conv1.g1/iou.raw") == true)
        // Another taxonomy or another kind of file is refused, not overwritten.
        var other = taxonomy
        other.concepts = ["x", "y"]
        #expect { try SnapshotFile(path: path, dictionary: other) } throws: { "\($0)".hasSuffix("was written for another dictionary's taxonomy; choose another --out") }
        try writeDictionary(taxonomy, to: dir + "/d.h5")
        #expect(throws: StoreError.self) { try SnapshotFile(path: dir + "/d.h5", dictionary: taxonomy) }
    }
}
