import Foundation
import HNDWire

/// A cluster file (README § Clusters): the daemons of one dissection and the layers each
/// serves. JSON:
///
///     {"format": "hndd-cluster", "version": 1,
///      "daemons": [{"name": "a", "ingest": "tcp://h1:5555", "publish": "tcp://h1:5556",
///                   "control": "tcp://h1:5557", "key": "a.secret", "layers": ["layer3"]},
///                  {"name": "b", "run_dir": "/runs/b", "layers": ["layer4"], "shard": "1/2"}, …]}
///
/// A daemon is reached through its endpoints, or through `run_dir` (the endpoints.json of a
/// daemon on this machine); `key` is the credential for its CURVE endpoints (a path relative to
/// the cluster file). A layer served by several daemons is split by image: each has a `shard`
/// K/N, and together they hold shares 1..N. The Python client reads the same file
/// (`hndd_client.cluster`).
public struct ClusterFile: Sendable {
    public static let format = "hndd-cluster"

    public struct Daemon: Sendable, Equatable {
        public var name: String
        public var endpoints: Endpoints
        public var keyPath: String?
        public var layers: [String]
        public var shard: ImageShard?
    }

    public let path: String
    public let daemons: [Daemon]

    public init(_ path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DaemonError("\(path): cannot read the cluster file (\(String(cString: strerror(errno))))")
        }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DaemonError("\(path): not a JSON object (see README § Clusters)")
        }
        guard root["format"] as? String == Self.format, root["version"] as? Int == 1 else {
            throw DaemonError("\(path): expected \"format\": \"\(Self.format)\" and \"version\": 1")
        }
        guard let entries = root["daemons"] as? [[String: Any]], !entries.isEmpty else {
            throw DaemonError("\(path): \"daemons\" must be a non-empty list of objects")
        }
        let base = (path as NSString).deletingLastPathComponent
        daemons = try entries.enumerated().map { try Self.daemon($1, at: $0, file: path, base: base) }
        try checkNames()
        try checkShards()
    }

    static func daemon(_ entry: [String: Any], at i: Int, file: String, base: String) throws -> Daemon {
        func fail(_ what: String) -> DaemonError { DaemonError("\(file): daemons[\(i)]: \(what)") }
        guard let name = entry["name"] as? String, !name.isEmpty else { throw fail("\"name\" must be a non-empty string") }
        func resolve(_ p: String) -> String { p.hasPrefix("/") || base.isEmpty ? p : base + "/" + p }
        let endpoints: Endpoints
        if let runDir = entry["run_dir"] as? String {
            endpoints = RunDirectory(resolve(runDir)).endpoints()
        } else if let ingest = entry["ingest"] as? String, let publish = entry["publish"] as? String,
                  let control = entry["control"] as? String {
            endpoints = Endpoints(ingest: ingest, publish: publish, control: control)
        } else {
            throw fail("(\(name)) needs \"run_dir\", or \"ingest\", \"publish\" and \"control\" endpoints")
        }
        guard let layers = entry["layers"] as? [String], !layers.isEmpty else {
            throw fail("(\(name)) \"layers\" must be a non-empty list of layer names")
        }
        var shard: ImageShard?
        if let text = entry["shard"] {
            guard let text = text as? String else { throw fail("(\(name)) \"shard\" must be a string K/N") }
            do { shard = try ImageShard(parsing: text) } catch { throw fail("(\(name)) \(error)") }
        }
        return Daemon(name: name, endpoints: endpoints, keyPath: (entry["key"] as? String).map(resolve), layers: layers, shard: shard)
    }

    func checkNames() throws {
        var seen = Set<String>()
        for d in daemons where !seen.insert(d.name).inserted { throw DaemonError("\(path): two daemons are named \(d.name)") }
    }

    /// A layer on one daemon has no shard (or 1/1); on several, shards 1..N of one N.
    func checkShards() throws {
        for layer in Set(daemons.flatMap(\.layers)).sorted() {
            let serving = daemons.filter { $0.layers.contains(layer) }
            guard serving.count > 1 || (serving[0].shard?.count ?? 1) > 1 else { continue }
            let shards = serving.compactMap(\.shard)
            let n = serving.count
            guard shards.count == n, shards.allSatisfy({ $0.count == n }), Set(shards.map(\.index)) == Set(1...n) else {
                throw DaemonError("\(path): layer \(layer) is served by \(serving.map(\.name).joined(separator: ", ")): a layer split by "
                                  + "image needs one daemon per shard 1/\(n) … \(n)/\(n) (found: "
                                  + serving.map { "\($0.name) \($0.shard.map(\.description) ?? "no shard")" }.joined(separator: ", ") + ")")
            }
        }
    }

    /// The daemons that serve `layer`, or why none does.
    public func daemons(serving layer: String) throws -> [Daemon] {
        let serving = daemons.filter { $0.layers.contains(layer) }
        guard !serving.isEmpty else {
            throw DaemonError("\(path): no daemon serves layer \(layer) (layers: \(Set(daemons.flatMap(\.layers)).sorted().joined(separator: ", ")))")
        }
        return serving
    }

    /// The daemon's credential, when it has one (a warning on stderr if others may read it).
    public func credential(of daemon: Daemon) throws -> ClientCredential? {
        guard let keyPath = daemon.keyPath else { return nil }
        return try CredentialLoading.load(keyPath)
    }
}

/// Loading a credential for a command: its permission warning goes to stderr, as ssh's does.
public enum CredentialLoading {
    public static func load(_ path: String) throws -> ClientCredential {
        let (credential, warning) = try ClientCredential.load(path)
        if let warning { FileHandle.standardError.write(Data("hndd: warning: \(warning)\n".utf8)) }
        return credential
    }
}
