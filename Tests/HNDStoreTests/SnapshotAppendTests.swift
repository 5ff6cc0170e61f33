import Foundation
import Testing
@testable import HNDEngine
@testable import HNDStore

/// The writer's promises beyond the layout: torn appends are never read and are overwritten,
/// one writer at a time, a refused row costs no other.
@Suite struct SnapshotAppendTests {
    @Test func aTornAppendIsNotReadAndIsOverwrittenByTheNextOne() throws {
        let path = temporaryDirectory() + "/s.h5"
        var out: SnapshotFile? = try SnapshotFile(path: path, dictionary: taxonomy)
        try out!.append([distinctSnapshot(step: 1), distinctSnapshot(step: 2)])
        let layer = out!.layers[0]
        // A crash after the row files got part of row 2 and before the index named it.
        for dataset in layer.datasets {
            let handle = try #require(FileHandle(forWritingAtPath: layer.rowFile(of: dataset)))
            handle.seekToEndOfFile()
            handle.write(Data(repeating: 0xAB, count: layer.rowBytes(of: dataset) / 2 + 1))
            handle.closeFile()
        }
        out = nil
        var reader = try SnapshotReader(path: path)
        #expect(try reader.layer(layer.name).rows.map(\.step) == [1, 2])
        out = try SnapshotFile(path: path, dictionary: taxonomy) // cuts the torn bytes
        for dataset in layer.datasets {
            let size = try FileManager.default.attributesOfItem(atPath: layer.rowFile(of: dataset))[.size] as? Int
            #expect(size == 2 * layer.rowBytes(of: dataset), "\(dataset.name)")
        }
        try out!.append([distinctSnapshot(step: 3, seen: 1)])
        reader = try SnapshotReader(path: path)
        let rows = try reader.layer(layer.name)
        #expect(rows.rows.map(\.step) == [1, 2, 3])
        #expect(try withoutUntestedP(reader.snapshot(rows, row: 2, detail: .everything)) == withoutUntestedP(distinctSnapshot(step: 3, seen: 1)))
    }

    @Test func oneWriterAtATime() throws {
        let path = temporaryDirectory() + "/s.h5"
        let first = try SnapshotFile(path: path, dictionary: taxonomy)
        #expect { try SnapshotFile(path: path, dictionary: taxonomy) } throws: {
            "\($0)" == "\(path): another hndd process is writing this snapshot file (it holds \(first.rowDirectory.path)/lock)"
        }
    }

    @Test func aRunNameTooLongIsRefusedAndCostsNoOtherRow() throws {
        let path = temporaryDirectory() + "/s.h5"
        let out = try SnapshotFile(path: path, dictionary: taxonomy)
        var long = distinctSnapshot(step: 2)
        long.layer = "other"
        long.run = String(repeating: "é", count: SnapshotSchema.runBytes / 2 + 1)
        #expect { try out.append([distinctSnapshot(step: 1), long]) } throws: {
            "\($0)".contains("/layers/other/run: step 2: \"\(long.run)\" is longer than 256 UTF-8 bytes")
        }
        #expect(out.layers.isEmpty)
        try out.append([distinctSnapshot(step: 1)])
        #expect(try SnapshotReader(path: path).layer("layer4.1.conv1").rows.map(\.step) == [1])
    }
}
