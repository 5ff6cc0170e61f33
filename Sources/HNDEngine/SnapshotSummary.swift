/// The names of a Face Dictionary's taxonomy (docs/1-dictionary.md) and how they nest: what a snapshot's
/// counts are named by. The dictionary itself has them, and so do a snapshot file and a published
/// snapshot, each of which carries a copy; the counts read them from whichever is at hand.
public protocol TaxonomyNames {
    var categories: [String] { get }
    var subgroups: [String] { get }
    /// Index into `categories`, one per subgroup.
    var subgroupCategory: [Int32] { get }
    var regions: [String] { get }
    var concepts: [String] { get }
    /// Index into `regions`, one per concept.
    var conceptRegion: [Int32] { get }
    /// A `FaceDictionary.ConceptType`, one per concept.
    var conceptType: [Int32] { get }
}

extension FaceDictionary: TaxonomyNames {}

extension TaxonomyNames {
    /// Subgroup indices of each category, in dictionary order.
    public var subgroupsOfCategory: [[Int]] {
        var members = [[Int]](repeating: [], count: categories.count)
        for (s, g) in subgroupCategory.enumerated() where members.indices.contains(Int(g)) { members[Int(g)].append(s) }
        return members
    }

    /// Stage I's cut for the subgroups of category `g` (`StageRules.biasThreshold`).
    public func biasThreshold(category g: Int) -> Double {
        StageRules.biasThreshold(subgroups: max(subgroupsOfCategory[g].count, 1))
    }

    /// Stage I's cut of each subgroup: that of its category.
    public var biasThresholds: [Double] {
        let members = subgroupsOfCategory
        return subgroupCategory.map { StageRules.biasThreshold(subgroups: max(members[Int($0)].count, 1)) }
    }
}

extension FaceDictionary.ConceptType {
    /// How the counts name each type, in the order of the raw values.
    public static let names = ["part", "attribute", "action unit"]
}

/// The counts people read off a snapshot — the paper's dissection report in numbers. The one place
/// that computes them: `subscribe`, `summary`, `report`, `dissect` and the demo's tables (through
/// `hndd summary --json`) all read them from here.
public struct SnapshotSummary: Sendable, Equatable {
    public struct Count: Sendable, Equatable {
        public var name: String
        public var units: Int
    }

    /// How the interpretable units split between the two kinds of interpretation (Fig. 8).
    public struct Coverage: Sendable, Equatable {
        public var pairedAndBiased = 0
        public var pairedOnly = 0
        public var biasedOnly = 0
    }

    /// Counts of the significant pairings: "biased and significant", "paired and significant".
    public struct Significant: Sendable, Equatable {
        public var interpretable = 0
        public var biased = 0
        public var paired = 0
        /// Units significantly paired with each local concept, most first, zeros left out.
        public var conceptUnits: [Count] = []
        /// Units significantly biased toward each subgroup, in dictionary order.
        public var subgroupUnits: [Count] = []
    }

    public var units: Int
    /// Biased toward some subgroup or paired with some local concept.
    public var interpretable: Int
    /// Labelled by the Network Dissection baseline.
    public var netdissect: Int
    /// Localised in a region (Stage II).
    public var localised: Int
    /// Biased toward some global subgroup (Stage I).
    public var biased: Int
    /// Paired with some local concept (Stage III).
    public var paired: Int
    public var coverage: Coverage
    /// The same counts with only significant pairings (adjusted p ≤ `FalseDiscovery.rate`); nil
    /// when the snapshot skipped the tests (a partial pass).
    public var significant: Significant?
    /// Units biased beyond the untrained network (the run's baseline pass); nil when the snapshot
    /// has no change test (a partial pass, or no baseline yet).
    public var beyondUntrained: BeyondUntrained?
    /// Localised units per region, in dictionary order.
    public var unitsPerRegion: [Count]
    /// Units paired with each local concept, most first, zeros left out.
    public var conceptUnits: [Count]
    /// Units the Network Dissection baseline labels with each concept, most first, zeros left out.
    public var netdissectConceptUnits: [Count]
    /// Units biased toward each subgroup, in dictionary order.
    public var subgroupUnits: [Count]
    /// Units biased toward some subgroup of each category, in dictionary order.
    public var categoryUnits: [Count]
    /// Paired units per concept type (part, attribute, action unit): a unit paired with two types
    /// counts in both.
    public var typeUnits: [Count]

    public init(_ s: LayerSnapshot, taxonomy t: some TaxonomyNames) {
        let l = s.conceptCount, g = s.subgroupCount
        units = s.units
        interpretable = s.interpretableUnits
        netdissect = s.netdissectUnits
        localised = s.region.filter { $0 >= 0 }.count
        var coverage = Coverage()
        for u in 0..<s.units {
            switch (s.isPaired(unit: u), s.isBiased(unit: u)) {
            case (true, true): coverage.pairedAndBiased += 1
            case (true, false): coverage.pairedOnly += 1
            case (false, true): coverage.biasedOnly += 1
            case (false, false): break
            }
        }
        self.coverage = coverage
        biased = coverage.pairedAndBiased + coverage.biasedOnly
        paired = coverage.pairedAndBiased + coverage.pairedOnly
        unitsPerRegion = t.regions.enumerated().map { r, name in Count(name: name, units: s.region.filter { $0 == Int32(r) }.count) }
        var pairedPerConcept = [Int](repeating: 0, count: l)
        var typePaired = [Int](repeating: 0, count: FaceDictionary.ConceptType.names.count)
        for u in 0..<s.units {
            var types = Set<Int32>()
            for c in 0..<l where s.localPaired[u * l + c] != 0 {
                pairedPerConcept[c] += 1
                types.insert(t.conceptType[c])
            }
            for type in types where typePaired.indices.contains(Int(type)) { typePaired[Int(type)] += 1 }
        }
        conceptUnits = Self.ranked(t.concepts, pairedPerConcept)
        var labelled = [Int](repeating: 0, count: l)
        for c in s.netdissectConcept where c >= 0 { labelled[Int(c)] += 1 }
        netdissectConceptUnits = Self.ranked(t.concepts, labelled)
        subgroupUnits = t.subgroups.enumerated().map { i, name in
            Count(name: name, units: (0..<s.units).filter { s.globalBiased[$0 * g + i] != 0 }.count)
        }
        categoryUnits = zip(t.categories, t.subgroupsOfCategory).map { name, members in
            Count(name: name, units: (0..<s.units).filter { u in members.contains { s.globalBiased[u * g + $0] != 0 } }.count)
        }
        typeUnits = zip(FaceDictionary.ConceptType.names, typePaired).map { Count(name: $0, units: $1) }
        significant = s.significanceTested ? Self.significantCounts(s, taxonomy: t) : nil
        beyondUntrained = s.changeTested ? BeyondUntrained(s, taxonomy: t) : nil
    }

    static func significantCounts(_ s: LayerSnapshot, taxonomy t: some TaxonomyNames) -> Significant {
        let l = s.conceptCount, g = s.subgroupCount
        var out = Significant()
        for u in 0..<s.units {
            let biased = s.isSignificantlyBiased(unit: u), paired = s.isSignificantlyPaired(unit: u)
            if biased { out.biased += 1 }
            if paired { out.paired += 1 }
            if biased || paired { out.interpretable += 1 }
        }
        let perConcept = (0..<l).map { c in (0..<s.units).filter { s.localSignificant[$0 * l + c] != 0 }.count }
        out.conceptUnits = ranked(t.concepts, perConcept)
        out.subgroupUnits = t.subgroups.enumerated().map { i, name in
            Count(name: name, units: (0..<s.units).filter { s.globalSignificant[$0 * g + i] != 0 }.count)
        }
        return out
    }

    static func ranked(_ names: [String], _ counts: [Int]) -> [Count] {
        zip(names, counts).filter { $0.1 > 0 }.map { Count(name: $0, units: $1) }
            .sorted { $0.units != $1.units ? $0.units > $1.units : $0.name < $1.name }
    }

    /// The subgroup unit `u` is most strongly biased toward: the largest margin P_s − (1/S + 0.05)
    /// among its biased subgroups (the first on a tie); nil when it is biased toward none.
    /// `thresholds` are the taxonomy's `biasThresholds`.
    public static func strongestBias(_ s: LayerSnapshot, unit u: Int, thresholds: [Double]) -> Int? {
        let g = s.subgroupCount
        var best: Int?, bestMargin = -Double.infinity
        for sub in 0..<g where s.globalBiased[u * g + sub] != 0 {
            let margin = Double(s.globalProb[u * g + sub]) - thresholds[sub]
            if margin > bestMargin { best = sub; bestMargin = margin }
        }
        return best
    }

    /// For each local concept (dictionary order), its paired units counted by the subgroup each is
    /// most strongly biased toward: G entries, then one for units biased toward none (Fig. 1, 6).
    /// Needs the snapshot's probabilities, not only its labels.
    public static func pairedUnitsByStrongestBias(_ s: LayerSnapshot, taxonomy t: some TaxonomyNames) -> [[Int]] {
        let l = s.conceptCount, g = s.subgroupCount, thresholds = t.biasThresholds
        let strongest = (0..<s.units).map { strongestBias(s, unit: $0, thresholds: thresholds) }
        var split = [[Int]](repeating: [Int](repeating: 0, count: g + 1), count: l)
        for u in 0..<s.units {
            for c in 0..<l where s.localPaired[u * l + c] != 0 { split[c][strongest[u] ?? g] += 1 }
        }
        return split
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

/// The passes of one layer in the order a watcher sees them, for "what changed since the
/// previous pass": a snapshot of step S is compared with the last complete pass of another step.
/// `subscribe` feeds it live snapshots, `summary` a file's rows, so both say the same.
public struct PassHistory: Sendable {
    /// The last complete pass, and the last complete one of another step before it.
    private var last: (step: Int64, summary: SnapshotSummary)?
    private var beforeLast: (step: Int64, summary: SnapshotSummary)?

    public init() {}

    /// The pass a snapshot of `step` is compared with.
    public func previous(ofStep step: Int64) -> (step: Int64, summary: SnapshotSummary)? {
        last?.step != step ? last : beforeLast
    }

    /// Records a snapshot of `step`; returns what changed since its previous pass (nothing before
    /// there is one).
    public mutating func record(step: Int64, complete: Bool, summary: SnapshotSummary) -> [String] {
        let changes = previous(ofStep: step).map { summary.changes(since: $0.summary) } ?? []
        if complete {
            if let last, last.step != step { beforeLast = last }
            last = (step, summary)
        }
        return changes
    }
}
