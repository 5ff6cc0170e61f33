import Testing
@testable import HNDDaemon
import HNDEngine
import HNDWire

/// The status counters' names: one list (`RejectionReason`), every refusal mapped onto it.
@Suite struct RejectionReasonTests {
    @Test func everyWireRejectionHasItsCounter() {
        let rejections: [(BatchRejection, RejectionReason)] = [
            (.frameCount(received: 3), .frameCount),
            (.malformedHeader(detail: "x"), .malformedHeader),
            (.unsupportedVersion(9), .badVersion),
            (.unknownDType(rawValue: 7), .badDType),
            (.invalidName(field: "run", detail: "is empty"), .badName),
            (.invalidShape(detail: "no images"), .badShape),
            (.sizeMismatch(expectedBytes: 8, receivedBytes: 4), .sizeMismatch),
        ]
        for (rejection, reason) in rejections { #expect(rejection.reason == reason, "\(rejection)") }
    }

    @Test func everyEngineErrorHasItsCounter() {
        let errors: [(BatchError, RejectionReason)] = [
            (.emptyShape(units: 0, height: 1, width: 1), .emptyShape),
            (.valueCount(expected: 8, got: 7), .sizeMismatch),
            (.unitCountChanged(expected: 2, got: 3), .unitCountChanged),
            (.mapSizeChanged(expected: (2, 2), got: (1, 4)), .mapSizeChanged),
            (.imageIDOutOfRange(position: 0, id: 50, imageCount: 50), .imageIDOutOfRange),
            (.nonFinite(imageID: 4, unit: 0, position: 0, value: .nan), .nonFinite),
        ]
        for (error, reason) in errors { #expect(RejectionReason(error) == reason, "\(error)") }
    }

    @Test func statusListsEveryCounterOnceEvenWhenZero() {
        let names = RejectionReason.allCases.map(\.rawValue)
        #expect(Set(names).count == names.count)
        #expect(Set(DaemonCounters().rejected.keys) == Set(RejectionReason.allCases))
        #expect(DaemonCounters().rejected.values.allSatisfy { $0 == 0 })
        // The names are the protocol's (proto/hndd.proto: Status.rejected_batches), which clients read.
        #expect(names == ["frame_count", "malformed_header", "bad_version", "bad_dtype", "bad_name", "bad_shape",
                          "size_mismatch", "empty_shape", "unit_count_changed", "map_size_changed",
                          "image_id_out_of_range", "non_finite", "pass_finished", "not_in_shard", "control_malformed"])
    }
}
