extension SnapshotSummary {
    /// Units biased beyond the untrained network (`LayerSnapshot.globalBeyondUntrained`):
    /// significantly biased, and their P rose since the run's baseline pass by more than chance.
    public struct BeyondUntrained: Sendable, Equatable {
        /// Units with some such subgroup.
        public var units = 0
        /// Per category, in dictionary order: units with some such subgroup of the category.
        public var categoryUnits: [Count] = []
        /// Per subgroup, in dictionary order.
        public var subgroupUnits: [Count] = []

        public init(_ s: LayerSnapshot, taxonomy t: some TaxonomyNames) {
            let g = s.subgroupCount
            units = (0..<s.units).filter(s.isBiasedBeyondUntrained).count
            categoryUnits = zip(t.categories, t.subgroupsOfCategory).map { name, members in
                Count(name: name, units: (0..<s.units).filter { u in members.contains { s.globalBeyondUntrained[u * g + $0] != 0 } }.count)
            }
            subgroupUnits = t.subgroups.enumerated().map { i, name in
                Count(name: name, units: (0..<s.units).filter { s.globalBeyondUntrained[$0 * g + i] != 0 }.count)
            }
        }
    }
}
