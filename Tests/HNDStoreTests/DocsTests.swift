import Foundation
import Testing
@testable import HNDStore

/// The manual (docs/) describes the snapshot file's datasets; the schema table writes them. The
/// two lists must be the same, in name, shape and element type, so that neither drifts.
@Suite struct DocsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The rows of the first table after `marker` in a page of docs/: (name, shape, type).
    static func documentedDatasets(page: String, after marker: String) throws -> [(name: String, shape: String, type: String)] {
        let text = try String(contentsOf: repository.appendingPathComponent("docs/" + page), encoding: .utf8)
        guard let start = text.range(of: marker) else { throw DocsError("docs/\(page) has no \(marker)") }
        var rows: [(String, String, String)] = []
        for line in text[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).drop(while: { !$0.hasPrefix("|") }) {
            guard line.hasPrefix("|") else { break }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4, cells[1].hasPrefix("`") else { continue } // the header and its rule
            rows.append((cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`")), cells[2], cells[3]))
        }
        return rows
    }

    struct DocsError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test func theManualListsEverySnapshotDatasetAsTheSchemaWritesIt() throws {
        let documented = try Self.documentedDatasets(page: "4-snapshots.md", after: "## A layer's datasets")
        let written = SnapshotSchema.datasets.map { (name: $0.name, shape: $0.shapeDescription, type: $0.element.rawValue) }
        #expect(documented.map(\.name) == written.map(\.name), "docs/4-snapshots.md lists the datasets SnapshotSchema writes, in its order")
        for dataset in written {
            let row = documented.first { $0.name == dataset.name }
            #expect(row?.shape == dataset.shape, "\(dataset.name): documented shape \(row?.shape ?? "none"), written \(dataset.shape)")
            #expect(row?.type == dataset.type, "\(dataset.name): documented type \(row?.type ?? "none"), written \(dataset.type)")
        }
    }

    @Test func theManualStatesTheSnapshotFormatAndVersion() throws {
        let text = try String(contentsOf: Self.repository.appendingPathComponent("docs/4-snapshots.md"), encoding: .utf8)
        #expect(text.contains("| `/` attribute `format` | `\(SnapshotSchema.format)` |"))
        #expect(text.contains("| `/` attribute `version` | \(SnapshotSchema.version) |"))
    }

    @Test func theManualStatesTheDictionaryFormat() throws {
        let text = try String(contentsOf: Self.repository.appendingPathComponent("docs/1-dictionary.md"), encoding: .utf8)
        #expect(text.contains("`\(DictionaryFile.format)`"))
    }
}
