/// When a layer worker publishes partial snapshots of its open passes (README § The daemon); each
/// worker has its own. A pure value: it is told the time, so each of its rules is tested with a
/// fake clock.
///
/// - A round of partial snapshots is due every `interval`, but never sooner than four times what
///   the last round cost: partial snapshots take at most a fifth of the worker's time.
/// - While batches wait for the worker, a round is skipped (the pass is moving faster than a
///   snapshot could show, and its complete snapshot comes sooner without one) unless the last
///   round is ten intervals old (and four costs).
/// - No partial snapshot of a pass expected, at its rate so far, to complete within the interval
///   or four costs: it would only delay the complete one.
/// - Only a round that published anything sets the cost and the time of the last round; the
///   first round has no cost to go by.
public struct SnapshotSchedule: Sendable, Equatable {
    /// `--snapshot-interval`, seconds.
    public let interval: Double
    /// What the last round that published took, seconds (0 before the first).
    public private(set) var cost = 0.0
    /// When that round ended (0 before the first: the first round is due at once).
    public private(set) var lastRound = 0.0

    public init(interval: Double) { self.interval = interval }

    /// The shortest time from one round to the next.
    public var spacing: Double { max(interval, 4 * cost) }

    /// The age past which a round goes out even while batches wait.
    public var staleAfter: Double { max(10 * interval, 4 * cost) }

    /// A pass expected to complete within this many seconds gets no partial snapshot.
    public var completionHorizon: Double { max(interval, 4 * cost) }

    /// Whether a round of partial snapshots is due at `now`.
    public func isRoundDue(now: Double, batchesWaiting: Bool) -> Bool {
        let age = now - lastRound
        return age >= spacing && (!batchesWaiting || age >= staleAfter)
    }

    /// Whether a pass, expected to complete in `secondsToComplete` (nil: no rate yet), gets a
    /// partial snapshot in this round.
    public func wantsPartial(secondsToComplete: Double?) -> Bool {
        guard let secondsToComplete else { return true }
        return secondsToComplete >= completionHorizon
    }

    /// A round ran from `started` to `ended`. Only one that published sets the cost and the time
    /// of the last round: a round with nothing to show (every pass about to complete, or no new
    /// images) must not make the next one wait, nor look cheap.
    public mutating func recordRound(started: Double, ended: Double, published: Bool) {
        guard published else { return }
        cost = ended - started
        lastRound = ended
    }
}
