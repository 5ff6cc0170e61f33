/// The counts people read off a snapshot — the paper's dissection report in numbers. One place
/// computes them for `subscribe`, `report` and the demo.
public struct SnapshotSummary: Sendable, Equatable {
    public struct Count: Sendable, Equatable {
        public var name: String
        public var units: Int
    }

    public var units: Int
    /// Biased toward some subgroup or paired with some local concept.
    public var interpretable: Int
    public var netdissect: Int
    public var localised: Int
    public var biased: Int
    /// Localised units per region (Stage II), in dictionary order.
    public var unitsPerRegion: [Count]
    /// Units paired with each local concept (Stage III), most first, zeros left out.
    public var conceptUnits: [Count]
    /// Units the Network Dissection baseline labels with each concept, most first.
    public var netdissectConceptUnits: [Count]
    /// Units biased toward each subgroup (Stage I), in dictionary order.
    public var subgroupUnits: [Count]
    /// Paired units per concept type: part, attribute, action unit.
    public var typeUnits: [Count]

    public init(_ s: LayerSnapshot, regions: [String], concepts: [String], conceptType: [Int32], subgroups: [String]) {
        let l = s.conceptCount, g = s.subgroupCount
        units = s.units
        interpretable = s.interpretableUnits
        netdissect = s.netdissectUnits
        localised = s.region.filter { $0 >= 0 }.count
        biased = (0..<s.units).filter(s.isBiased).count
        unitsPerRegion = regions.enumerated().map { r, name in Count(name: name, units: s.region.filter { $0 == Int32(r) }.count) }
        var paired = [Int](repeating: 0, count: l)
        var typePaired = [Int](repeating: 0, count: 3)
        for u in 0..<s.units {
            var types = Set<Int32>()
            for c in 0..<l where s.localPaired[u * l + c] != 0 {
                paired[c] += 1
                types.insert(conceptType[c])
            }
            for t in types where t >= 0 && t < 3 { typePaired[Int(t)] += 1 }
        }
        conceptUnits = Self.ranked(concepts, paired)
        var labelled = [Int](repeating: 0, count: l)
        for c in s.netdissectConcept where c >= 0 { labelled[Int(c)] += 1 }
        netdissectConceptUnits = Self.ranked(concepts, labelled)
        subgroupUnits = subgroups.enumerated().map { i, name in
            Count(name: name, units: (0..<s.units).filter { s.globalBiased[$0 * g + i] != 0 }.count)
        }
        typeUnits = zip(["part", "attribute", "action unit"], typePaired).map { Count(name: $0, units: $1) }
    }

    static func ranked(_ names: [String], _ counts: [Int]) -> [Count] {
        zip(names, counts).filter { $0.1 > 0 }.map { Count(name: $0, units: $1) }
            .sorted { $0.units != $1.units ? $0.units > $1.units : $0.name < $1.name }
    }

    /// What changed from `previous` (an earlier pass) to this one, as short phrases.
    public func changes(since previous: SnapshotSummary) -> [String] {
        var lines: [String] = []
        func delta(_ a: Int, _ b: Int) -> String { a - b >= 0 ? "+\(a - b)" : "\(a - b)" }
        lines.append("interpretable \(previous.interpretable) → \(interpretable) (\(delta(interpretable, previous.interpretable)))")
        lines.append("Network Dissection \(previous.netdissect) → \(netdissect) (\(delta(netdissect, previous.netdissect)))")
        let before = Dictionary(previous.conceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let after = Dictionary(conceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let moved = Set(before.keys).union(after.keys)
            .map { ($0, (after[$0] ?? 0) - (before[$0] ?? 0)) }
            .filter { $0.1 != 0 }
            .sorted { abs($0.1) != abs($1.1) ? abs($0.1) > abs($1.1) : $0.0 < $1.0 }
        if !moved.isEmpty {
            lines.append("concept units: " + moved.prefix(6).map { "\($0.0) \($0.1 > 0 ? "+" : "")\($0.1)" }.joined(separator: ", "))
        }
        let biasMoves = zip(previous.subgroupUnits, subgroupUnits).filter { $0.units != $1.units }
            .map { "\($1.name) \(delta($1.units, $0.units))" }
        if !biasMoves.isEmpty { lines.append("biased units: " + biasMoves.prefix(6).joined(separator: ", ")) }
        return lines
    }
}
