/// One dissection of one layer over the images seen so far: a row of docs/4-snapshots.md.
public struct LayerSnapshot: Sendable, Equatable {
    public var layer: String
    public var run: String = ""
    public var step: Int64 = 0
    public var imagesSeen: Int
    public var imagesTotal: Int
    public var complete: Bool { imagesSeen == imagesTotal }
    public var timeUnix: Double = 0
    public var units: Int
    /// Dimensions, for reading the flat arrays: G subgroups, L concepts, k top images.
    public var subgroupCount: Int
    public var conceptCount: Int
    public var topImageCount: Int

    /// [C] T_u (NaN before any image of the local set arrived).
    public var threshold: [Float]
    /// [C, G]
    public var globalProb: [Float]
    public var globalBiased: [UInt8]
    /// [C, L]
    public var iou: [Float]
    /// [C] region index, −1 unlocalised.
    public var region: [Int32]
    /// [C, L], 0 outside the unit's region.
    public var localProb: [Float]
    public var localPaired: [UInt8]
    /// Whether the snapshot holds the significance tests: complete passes do, partial ones skip
    /// them (as do files written before them).
    public var significanceTested = false
    /// [C, G] Benjamini–Hochberg adjusted p-values of Stage I's P under the permutation null
    /// (`PermutationNull`); 1 where nothing was tested, NaN in a snapshot that skipped the tests
    /// (a partial pass).
    public var globalP: [Float]
    /// [C, G] 1 when biased and the adjusted p-value is at most `FalseDiscovery.rate`.
    public var globalSignificant: [UInt8]
    /// [C, L] as `globalP`, for Stage III (1 outside the unit's region).
    public var localP: [Float]
    /// [C, L] 1 when paired and the adjusted p-value is at most `FalseDiscovery.rate`.
    public var localSignificant: [UInt8]
    /// The change test against the run's baseline pass ("biased beyond the untrained network").
    public var change: ChangeTestValues
    /// Whether the snapshot holds the change test (complete passes of a layer with a baseline).
    public var changeTested: Bool { get { change.tested } set { change.tested = newValue } }
    /// [C, G] adjusted p-value of "P rose since the baseline pass" (`BaselineChange`); 1 where
    /// untested, NaN when the snapshot has no change test.
    public var globalChangeP: [Float] { get { change.p } set { change.p = newValue } }
    /// [C, G] 1 when biased, significant, and the change-p is at most `FalseDiscovery.rate`.
    public var globalBeyondUntrained: [UInt8] { get { change.flags } set { change.flags = newValue } }
    /// [C] concept index of the Network Dissection baseline, −1 none.
    public var netdissectConcept: [Int32]
    /// [C, k] the images with the largest unit maxima, largest first; −1 pads.
    public var topImages: [Int64]

    public init(layer: String, imagesSeen: Int, imagesTotal: Int, units: Int, subgroupCount: Int,
                conceptCount: Int, topImageCount: Int) {
        self.layer = layer
        self.imagesSeen = imagesSeen
        self.imagesTotal = imagesTotal
        self.units = units
        self.subgroupCount = subgroupCount
        self.conceptCount = conceptCount
        self.topImageCount = topImageCount
        threshold = .init(repeating: .nan, count: units)
        globalProb = .init(repeating: 0, count: units * subgroupCount)
        globalBiased = .init(repeating: 0, count: units * subgroupCount)
        iou = .init(repeating: 0, count: units * conceptCount)
        region = .init(repeating: -1, count: units)
        localProb = .init(repeating: 0, count: units * conceptCount)
        localPaired = .init(repeating: 0, count: units * conceptCount)
        globalP = .init(repeating: .nan, count: units * subgroupCount)
        globalSignificant = .init(repeating: 0, count: units * subgroupCount)
        localP = .init(repeating: .nan, count: units * conceptCount)
        localSignificant = .init(repeating: 0, count: units * conceptCount)
        change = ChangeTestValues(p: .init(repeating: .nan, count: units * subgroupCount),
                                  flags: .init(repeating: 0, count: units * subgroupCount))
        netdissectConcept = .init(repeating: -1, count: units)
        topImages = .init(repeating: -1, count: units * topImageCount)
    }

    /// Units biased toward some subgroup or paired with some local concept.
    public func isInterpretable(unit u: Int) -> Bool {
        isBiased(unit: u) || isPaired(unit: u)
    }
    public func isBiased(unit u: Int) -> Bool {
        globalBiased[(u * subgroupCount)..<((u + 1) * subgroupCount)].contains(1)
    }
    public func isPaired(unit u: Int) -> Bool {
        localPaired[(u * conceptCount)..<((u + 1) * conceptCount)].contains(1)
    }
    public func isSignificantlyBiased(unit u: Int) -> Bool {
        globalSignificant[(u * subgroupCount)..<((u + 1) * subgroupCount)].contains(1)
    }
    public func isSignificantlyPaired(unit u: Int) -> Bool {
        localSignificant[(u * conceptCount)..<((u + 1) * conceptCount)].contains(1)
    }
    public func isBiasedBeyondUntrained(unit u: Int) -> Bool {
        globalBeyondUntrained[(u * subgroupCount)..<((u + 1) * subgroupCount)].contains(1)
    }
    public var interpretableUnits: Int { (0..<units).filter(isInterpretable).count }
    public var netdissectUnits: Int { netdissectConcept.filter { $0 >= 0 }.count }
}

/// A snapshot's change-test arrays. Equal when bit for bit equal: a snapshot without the test
/// holds NaN p-values, and it must still equal itself.
public struct ChangeTestValues: Sendable, Equatable {
    public var tested = false
    public var p: [Float]
    public var flags: [UInt8]

    public static func == (a: Self, b: Self) -> Bool {
        a.tested == b.tested && a.flags == b.flags && a.p.map(\.bitPattern) == b.p.map(\.bitPattern)
    }
}
