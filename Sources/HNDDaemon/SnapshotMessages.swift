import HNDEngine
import HNDWire

extension Hndd_Taxonomy {
    public init(_ d: FaceDictionary) {
        self.init()
        categories = d.categories
        subgroups = d.subgroups
        subgroupCategory = d.subgroupCategory
        regions = d.regions
        concepts = d.concepts
        conceptRegion = d.conceptRegion
        conceptType = d.conceptType
    }
}

extension Hndd_Snapshot {
    /// The wire form of a snapshot, carrying the taxonomy so a subscriber needs nothing else.
    public init(_ s: LayerSnapshot, taxonomy: Hndd_Taxonomy, duplicates: [Int64] = []) {
        self.init()
        protocolVersion = WireProtocol.version
        layer = s.layer
        run = s.run
        step = s.step
        imagesSeen = Int64(s.imagesSeen)
        imagesTotal = Int64(s.imagesTotal)
        complete = s.complete
        timeUnix = s.timeUnix
        units = UInt32(s.units)
        threshold = s.threshold
        globalProb = s.globalProb
        globalBiased = s.globalBiased.map { $0 != 0 }
        iou = s.iou
        region = s.region
        localProb = s.localProb
        localPaired = s.localPaired.map { $0 != 0 }
        netdissectConcept = s.netdissectConcept
        topImagesPerUnit = UInt32(s.topImageCount)
        topImages = s.topImages
        if s.significanceTested {
            globalP = s.globalP
            globalSignificant = s.globalSignificant.map { $0 != 0 }
            localP = s.localP
            localSignificant = s.localSignificant.map { $0 != 0 }
        }
        if s.changeTested {
            globalChangeP = s.globalChangeP
            globalBeyondUntrained = s.globalBeyondUntrained.map { $0 != 0 }
        }
        self.taxonomy = taxonomy
        duplicatesReported = duplicates
    }
}

extension LayerSnapshot {
    /// A snapshot from its wire form (validated by `SnapshotPublication.decode`).
    public init(_ m: Hndd_Snapshot) {
        self.init(layer: m.layer, imagesSeen: Int(m.imagesSeen), imagesTotal: Int(m.imagesTotal), units: Int(m.units),
                  subgroupCount: m.taxonomy.subgroups.count, conceptCount: m.taxonomy.concepts.count,
                  topImageCount: Int(m.topImagesPerUnit))
        run = m.run
        step = m.step
        timeUnix = m.timeUnix
        threshold = m.threshold
        globalProb = m.globalProb
        globalBiased = m.globalBiased.map { $0 ? 1 : 0 }
        iou = m.iou
        region = m.region
        localProb = m.localProb
        localPaired = m.localPaired.map { $0 ? 1 : 0 }
        netdissectConcept = m.netdissectConcept
        topImages = m.topImages
        if !m.globalP.isEmpty || !m.localP.isEmpty {
            significanceTested = true
            globalP = m.globalP
            globalSignificant = m.globalSignificant.map { $0 ? 1 : 0 }
            localP = m.localP
            localSignificant = m.localSignificant.map { $0 ? 1 : 0 }
        }
        if !m.globalChangeP.isEmpty {
            changeTested = true
            globalChangeP = m.globalChangeP
            globalBeyondUntrained = m.globalBeyondUntrained.map { $0 ? 1 : 0 }
        }
    }
}

/// A published snapshot names its counts by the taxonomy it carries.
extension Hndd_Taxonomy: TaxonomyNames {}
