import Testing
@testable import HNDDaemon

/// A clock the test moves by hand.
struct FakeClock {
    var now = 1_000.0
    mutating func advance(_ seconds: Double) { now += seconds }
}

extension SnapshotSchedule {
    /// Runs a round at the clock's time that takes `cost` seconds.
    mutating func publishRound(on clock: inout FakeClock, cost: Double, published: Bool = true) {
        let started = clock.now
        clock.advance(cost)
        recordRound(started: started, ended: clock.now, published: published)
    }
}

/// Each rule of README § The daemon, "Partial snapshots go out every …".
@Suite struct SnapshotScheduleTests {
    @Test func theFirstRoundIsDueAtOnceWithNoCostToGoBy() {
        let schedule = SnapshotSchedule(interval: 1)
        #expect(schedule.cost == 0)
        #expect(schedule.isRoundDue(now: 1_000, batchesWaiting: false))
        #expect(schedule.completionHorizon == 1) // the interval alone
    }

    /// Every interval, or four costs when that is longer: partial snapshots then take at most a
    /// fifth of the engine's time (cost / (cost + spacing)).
    @Test(arguments: [(cost: 0.125, spacing: 1.0), (cost: 0.5, spacing: 2.0)])
    func roundsGoOutEveryIntervalOrFourCosts(round: (cost: Double, spacing: Double)) {
        var clock = FakeClock()
        var schedule = SnapshotSchedule(interval: 1)
        schedule.publishRound(on: &clock, cost: round.cost)
        #expect(schedule.spacing == round.spacing)
        clock.advance(round.spacing - 0.125)
        #expect(!schedule.isRoundDue(now: clock.now, batchesWaiting: false))
        clock.advance(0.125)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: false))
        #expect(schedule.cost / (schedule.cost + schedule.spacing) <= 0.2)
    }

    @Test func roundsAreSkippedWhileBatchesWaitUnlessTheLastIsTenIntervalsOld() {
        var clock = FakeClock()
        var schedule = SnapshotSchedule(interval: 1)
        schedule.publishRound(on: &clock, cost: 0.125)
        clock.advance(1)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: false))
        #expect(!schedule.isRoundDue(now: clock.now, batchesWaiting: true))
        clock.advance(8.5)
        #expect(!schedule.isRoundDue(now: clock.now, batchesWaiting: true))
        clock.advance(0.5)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: true), "ten intervals old")
    }

    @Test func aStaleRoundAlsoWaitsForFourCosts() {
        var clock = FakeClock()
        var schedule = SnapshotSchedule(interval: 0.1)
        schedule.publishRound(on: &clock, cost: 0.5)
        clock.advance(1.5) // fifteen intervals, but not four costs
        #expect(!schedule.isRoundDue(now: clock.now, batchesWaiting: true))
        clock.advance(0.5)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: true))
    }

    @Test func noPartialOfAPassAboutToComplete() {
        var clock = FakeClock()
        var schedule = SnapshotSchedule(interval: 1)
        #expect(schedule.wantsPartial(secondsToComplete: nil), "no rate yet")
        #expect(!schedule.wantsPartial(secondsToComplete: 0.9), "completes within the interval")
        #expect(schedule.wantsPartial(secondsToComplete: 1))
        schedule.publishRound(on: &clock, cost: 0.375)
        #expect(!schedule.wantsPartial(secondsToComplete: 1.25), "completes within four costs")
        #expect(schedule.wantsPartial(secondsToComplete: 1.5))
    }

    @Test func aRoundThatPublishedNothingKeepsTheCostAndTheTimeOfTheLastOne() {
        var clock = FakeClock()
        var schedule = SnapshotSchedule(interval: 1)
        schedule.publishRound(on: &clock, cost: 0.375)
        let before = schedule
        clock.advance(5)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: false))
        schedule.publishRound(on: &clock, cost: 0.0625, published: false)
        #expect(schedule == before, "neither cheaper nor later")
        #expect(schedule.cost == 0.375 && schedule.completionHorizon == 1.5)
        #expect(schedule.isRoundDue(now: clock.now, batchesWaiting: false), "the next turn may try again")
    }
}
