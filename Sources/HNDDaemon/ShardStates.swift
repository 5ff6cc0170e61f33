import Foundation
import HNDEngine

/// The finished passes of an image-shard daemon (`--shard K/N`), kept for `hndd merge`: one
/// file per pass in RUN-DIR/shards, in the checkpoint format (holding that one pass), named
/// `RUN@LAYER@STEP.hndd` with every byte outside [A-Za-z0-9._-] written %XX. The newest `keep`
/// passes of each layer stay; older ones are deleted.
struct ShardStates {
    let directory: String
    let keep: Int

    init(runDirectory: RunDirectory, keep: Int) {
        directory = runDirectory.path + "/shards"
        self.keep = keep
    }

    func path(of key: PassKey) -> String {
        directory + "/" + Self.escape(key.run) + "@" + Self.escape(key.layer) + "@" + String(key.step) + ".hndd"
    }

    /// Writes the pass's state and deletes the layer's passes beyond the newest `keep`.
    func save(_ pass: OpenPass, index: DictionaryIndex, options: DissectionOptions) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try Checkpoint.write(passes: [pass], finished: [], index: index, options: options, to: path(of: pass.key))
        let layerPasses = kept().filter { $0.key.layer == pass.key.layer }.sorted { $0.modified > $1.modified }
        for old in layerPasses.dropFirst(keep) { try? FileManager.default.removeItem(atPath: old.path) }
    }

    /// The kept pass of `key`, if any.
    func entry(_ key: PassKey) throws(StateError) -> Checkpoint.Entry? {
        try Checkpoint.contents(path(of: key))?.passes.first { $0.key == key }
    }

    /// Every kept pass: its key (from the file name), file and modification time.
    func kept() -> [(key: PassKey, path: String, modified: Date)] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.compactMap { file in
            guard file.hasSuffix(".hndd") else { return nil }
            let parts = file.dropLast(5).split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 3, let run = Self.unescape(parts[0]), let layer = Self.unescape(parts[1]),
                  let step = Int64(parts[2]) else { return nil }
            let path = directory + "/" + file
            let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
            return (PassKey(run: run, layer: layer, step: step), path, modified)
        }
    }

    static let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".utf8)

    static func escape(_ text: String) -> String {
        text.utf8.map { safe.contains($0) ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0) }.joined()
    }

    static func unescape(_ text: Substring) -> String? {
        var bytes: [UInt8] = [], utf8 = Array(text.utf8), i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%") {
                guard i + 2 < utf8.count, let byte = UInt8(String(decoding: utf8[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(byte); i += 3
            } else {
                bytes.append(utf8[i]); i += 1
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
