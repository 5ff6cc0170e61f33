/// Why the daemon refused a message: the keys of `Status.rejected_batches` (proto/hndd.proto),
/// listed there even when zero. The one list of these names: the wire's ``BatchRejection``, the
/// engine's batch errors and the daemon's own refusals each map onto a case.
public enum RejectionReason: String, CaseIterable, Sendable, Hashable {
    // The message does not decode (BatchRejection).
    case frameCount = "frame_count"
    case malformedHeader = "malformed_header"
    case badVersion = "bad_version"
    case badDType = "bad_dtype"
    case badName = "bad_name"
    case badShape = "bad_shape"
    /// The tensor's size does not fit its shape (said by the decoder and by the engine).
    case sizeMismatch = "size_mismatch"
    // The batch does not fit its pass (the engine and the pass book).
    case emptyShape = "empty_shape"
    case unitCountChanged = "unit_count_changed"
    case mapSizeChanged = "map_size_changed"
    case imageIDOutOfRange = "image_id_out_of_range"
    case nonFinite = "non_finite"
    /// A late batch of a pass already written.
    case passFinished = "pass_finished"
    /// An image outside this daemon's image shard (`hndd serve --shard K/N`).
    case notInShard = "not_in_shard"
    /// A control request that is not a valid ControlRequest (not an ingest batch, counted beside them).
    case controlMalformed = "control_malformed"
}

extension BatchRejection {
    /// The counter this rejection goes to.
    public var reason: RejectionReason {
        switch self {
        case .frameCount: .frameCount
        case .malformedHeader: .malformedHeader
        case .unsupportedVersion: .badVersion
        case .unknownDType: .badDType
        case .invalidName: .badName
        case .invalidShape: .badShape
        case .sizeMismatch: .sizeMismatch
        }
    }
}
