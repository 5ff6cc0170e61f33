import Foundation
import HNDWire
import Logging

/// Refusals on the CURVE endpoints, counted by reason (`hndd status`: auth_denied) and logged
/// with the peer's address. A refused client retries about ten times a second, so the log gets the
/// first refusal of each (reason, peer) at once and then one line per `summaryInterval` saying
/// how many followed. Counted by the ZAP thread and the engine thread: locked.
final class AuthDenials: @unchecked Sendable {
    static let summaryInterval = 10.0

    private let logger: Logger
    private let lock = NSLock()
    private var counts = Dictionary(uniqueKeysWithValues: AuthDenial.allCases.map { ($0, UInt64(0)) })
    /// Per (reason, peer): when it was last logged and how many refusals since.
    private var quiet: [String: (loggedAt: Double, since: Int)] = [:]

    init(logger: Logger) { self.logger = logger }

    var byReason: [AuthDenial: UInt64] {
        lock.lock(); defer { lock.unlock() }
        return counts
    }

    var total: UInt64 { byReason.values.reduce(0, +) }

    /// Counts one refusal; `peer` is the address, `detail` what was wrong.
    func deny(_ reason: AuthDenial, peer: String, detail: String) {
        let now = Date().timeIntervalSince1970
        lock.lock()
        counts[reason, default: 0] += 1
        let key = reason.rawValue + " " + peer
        let line: String?
        if let entry = quiet[key], now - entry.loggedAt < Self.summaryInterval {
            quiet[key] = (entry.loggedAt, entry.since + 1)
            line = nil
        } else {
            let since = quiet[key]?.since ?? 0
            quiet[key] = (now, 0)
            line = "refused \(peer) (\(reason.rawValue)): \(detail)"
                + (since > 0 ? " — and \(since) more time\(since == 1 ? "" : "s") since the last such line" : "")
        }
        lock.unlock()
        if let line { logger.warning("\(line)") }
    }
}
