/// Share K of N of a dictionary's images, for a layer split by image over N daemons: the images
/// whose id satisfies id mod N = K − 1 (README § Clusters; the Python client routes by the same
/// rule). A shard daemon's pass is due once its share arrived, and its state is kept for
/// `hndd merge` instead of being written as a row.
public struct ImageShard: Sendable, Equatable, CustomStringConvertible {
    /// K, from 1.
    public let index: Int
    /// N.
    public let count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1, index >= 1, index <= count else {
            throw DaemonError("shard \(index)/\(count): need 1 ≤ K ≤ N (K counts from 1, e.g. 1/2 and 2/2)")
        }
        self.index = index
        self.count = count
    }

    /// "K/N".
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw DaemonError("shard \"\(text)\": expected K/N, e.g. 1/2")
        }
        try self.init(index: k, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    public func holds(_ image: Int64) -> Bool { image >= 0 && Int(image % Int64(count)) == index - 1 }

    /// How many of `imageCount` images the share holds.
    public func size(of imageCount: Int) -> Int {
        imageCount / count + (index - 1 < imageCount % count ? 1 : 0)
    }
}
