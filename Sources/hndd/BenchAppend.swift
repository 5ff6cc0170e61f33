import ArgumentParser
import Foundation
import HNDEngine
import HNDStore

/// `hndd bench-append` (hidden): appends synthetic rows to a snapshot file through the daemon's
/// writer, one append per row, and prints per row what the append cost — for `tools/bench` and
/// the crash test, which kills it at random moments. Row r's values follow from r alone
/// (`benchRow`), so a checker can recompute every value of every committed row.
struct BenchAppend: HNDDCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-append", abstract: "Append synthetic rows (benchmark and crash test).", shouldDisplay: false)

    @Option(help: "Face Dictionary whose taxonomy the file holds.") var dictionary: String
    @Option(help: "Snapshot file to create or append to.") var out: String
    @Option(help: "Layer name.") var layer: String = "bench"
    @Option(help: "Units per row.") var units: Int = 2048
    @Option(help: "Rows to append (continuing after the rows already in the file).") var rows: Int
    @Option(help: "Keep only this many incomplete rows per layer when opening.") var keepPartials: Int?
    @Flag(help: "Print one JSON line per append (row, seconds, bytes written), flushed.") var perRow = false

    func execute() async throws {
        let taxonomy = try DictionaryFile.load(dictionary)
        let file = try SnapshotFile(path: out, dictionary: taxonomy, keepPartials: keepPartials)
        let first = try file.writtenPasses().filter { $0.layer == layer }.count
        for row in first..<(first + rows) {
            let s = benchRow(row, layer: layer, units: units, taxonomy: taxonomy)
            let before = IOCounters.read(), started = Date()
            try file.append([s])
            let seconds = Date().timeIntervalSince(started), after = IOCounters.read()
            if perRow {
                let line = "{\"row\": \(row), \"seconds\": \(seconds), \"wchar\": \(after.wchar - before.wchar), "
                    + "\"write_bytes\": \(after.writeBytes - before.writeBytes)}\n"
                FileHandle.standardOutput.write(Data(line.utf8)) // unbuffered: the crash test reads it as it comes
            }
        }
    }
}

/// The bytes this process has written: `wchar` through write calls, `write_bytes` to storage.
struct IOCounters {
    var wchar = 0, writeBytes = 0

    static func read() -> IOCounters {
        var counters = IOCounters()
        guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return counters }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let value = Int(parts[1]) else { continue }
            if parts[0] == "wchar" { counters.wchar = value }
            if parts[0] == "write_bytes" { counters.writeBytes = value }
        }
        return counters
    }
}

/// Row r of the benchmark: every value a function of (r, unit, index), exact in float32; every
/// seventh row incomplete. `Tests/store/bench_rows.py` computes the same.
func benchRow(_ r: Int, layer: String, units: Int, taxonomy: FaceDictionary) -> LayerSnapshot {
    let g = taxonomy.subgroups.count, l = taxonomy.concepts.count, k = 8, regions = taxonomy.regions.count
    var s = LayerSnapshot(layer: layer, imagesSeen: r % 7 == 6 ? 99 : 100, imagesTotal: 100, units: units,
                          subgroupCount: g, conceptCount: l, topImageCount: k)
    s.run = "bench-\(r / 1000)"
    s.step = Int64(r) * 10
    s.timeUnix = 1.7e9 + Double(r)
    s.threshold = (0..<units).map { Float(r) + Float($0) * 0.25 }
    s.globalProb = (0..<(units * g)).map { Float((r + 3 * ($0 / g) + 7 * ($0 % g)) % 997) / 1000 }
    s.globalBiased = (0..<(units * g)).map { (r + $0 / g + $0 % g) % 5 == 0 ? 1 : 0 }
    s.iou = (0..<(units * l)).map { Float((r + 3 * ($0 / l) + 7 * ($0 % l)) % 1000) / 1000 }
    s.region = (0..<units).map { Int32((r + $0) % (regions + 1)) - 1 }
    s.localProb = (0..<(units * l)).map { Float((r + 5 * ($0 / l) + 3 * ($0 % l)) % 991) / 1000 }
    s.localPaired = (0..<(units * l)).map { (r + 2 * ($0 / l) + $0 % l) % 7 == 0 ? 1 : 0 }
    s.netdissectConcept = (0..<units).map { Int32((r + $0) % (l + 1)) - 1 }
    s.topImages = (0..<(units * k)).map { Int64((r + $0) % 50) }
    return s
}
