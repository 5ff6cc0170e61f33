import Foundation

/// This process's resident size now and at its peak (VmRSS, VmHWM of /proc/self/status), in
/// bytes; nil where there is no /proc (not Linux). Memory files touched through the page cache
/// (snapshots, checkpoints) are not in it.
public enum ProcessMemory {
    public static func resident() -> (now: Int, peak: Int)? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        var now: Int?, peak: Int?
        for line in status.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") { now = kibibytes(line) } else if line.hasPrefix("VmHWM:") { peak = kibibytes(line) }
        }
        guard let now, let peak else { return nil }
        return (now * 1024, peak * 1024)
    }

    /// "VmRSS:   123456 kB" → 123456.
    private static func kibibytes(_ line: Substring) -> Int? {
        line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
    }
}
