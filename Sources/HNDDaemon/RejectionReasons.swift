import HNDEngine
import HNDWire

extension RejectionReason {
    /// The counter of a batch the engine refused.
    public init(_ error: BatchError) {
        switch error {
        case .emptyShape: self = .emptyShape
        case .valueCount: self = .sizeMismatch
        case .unitCountChanged: self = .unitCountChanged
        case .mapSizeChanged: self = .mapSizeChanged
        case .imageIDOutOfRange: self = .imageIDOutOfRange
        case .nonFinite: self = .nonFinite
        }
    }
}

/// Why a batch was not applied to its pass.
public struct Rejection: Error, Equatable, CustomStringConvertible {
    public let reason: RejectionReason
    public let description: String
}
