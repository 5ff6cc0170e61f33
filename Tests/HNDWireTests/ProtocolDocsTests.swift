import Foundation
import Testing
@testable import HNDWire

/// docs/protocol.md names every reason a batch can be refused for: the list a user greps for in
/// `hndd status` must be the one the daemon counts under.
@Test func theManualNamesEveryRejectionReason() throws {
    let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/protocol.md")
    let text = try String(contentsOf: page, encoding: .utf8)
    for reason in RejectionReason.allCases {
        #expect(text.contains("`\(reason.rawValue)`"), "docs/protocol.md does not name the rejection reason \(reason.rawValue)")
    }
}
