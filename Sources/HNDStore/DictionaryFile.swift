import HNDEngine

/// Reads a Face Dictionary file (docs/1-dictionary.md) and checks it: every problem is reported with the file
/// and the dataset it is in.
public enum DictionaryFile {
    /// The `format` attribute of a dictionary file.
    public static let format = "hndd-dictionary"

    public static func load(_ path: String) throws(StoreError) -> FaceDictionary {
        let file = try HDF5File.open(path)
        if file.hasAttribute("format") {
            let format = try file.stringAttribute("format")
            guard format == Self.format else {
                throw file.error("/ (attribute format)", "is \"\(format)\", expected \"\(Self.format)\"")
            }
        }
        let version = try self.version(of: file)
        let maskSize: Int64 = try file.numericAttribute("mask_size")
        let chi2: Double = file.hasAttribute("ellipse_chi2") ? try file.numericAttribute("ellipse_chi2") : FaceDictionary.defaultEllipseChi2

        let categories = try file.readStrings("/global/categories")
        let subgroups = try file.readStrings("/global/subgroups")
        let regions = try file.readStrings("/local/regions")
        let concepts = try file.readStrings("/local/concepts")
        let subgroupCategory = try vector("/global/subgroup_category", in: file, count: subgroups.count, as: Int32.self)
        let conceptRegion = try vector("/local/concept_region", in: file, count: concepts.count, as: Int32.self)
        let conceptType = try vector("/local/concept_type", in: file, count: concepts.count, as: Int32.self)

        let local = try file.read("/images/local_label", as: Int8.self)
        guard local.shape.count == 2, local.shape[1] == concepts.count else {
            throw file.error("/images/local_label", "shape \(local.shape), expected [N, \(concepts.count)] (images × local concepts)")
        }
        let n = local.shape[0]
        let global = try file.read("/images/global_label", as: Int32.self)
        guard global.shape == [n, categories.count] else {
            throw file.error("/images/global_label", "shape \(global.shape), expected [\(n), \(categories.count)] (images × categories)")
        }
        // With rasters the ellipses are only informative (docs/1-dictionary.md): their shape is checked, their
        // values (25 MB at the paper's size) are not kept.
        let rastersDefineMasks = version >= 2 && file.exists(MaskFile.dataset)
        let ellipseShape = try file.shape(of: "/images/ellipse")
        guard ellipseShape == [n, concepts.count, 5] else {
            throw file.error("/images/ellipse", "shape \(ellipseShape), expected [\(n), \(concepts.count), 5]")
        }
        let ellipse = rastersDefineMasks ? [] : try file.read("/images/ellipse", as: Float.self).values
        var sources: [String]?
        if file.exists("/images/source") {
            let names = try file.readStrings("/images/source")
            guard names.count == n else { throw file.error("/images/source", "holds \(names.count) names, expected \(n) (one per image)") }
            sources = names
        }
        var rasters: MaskRasters?
        if file.exists(MaskFile.dataset) {
            guard version >= 2 else {
                throw file.error(MaskFile.dataset, "raster masks in a version \(version) file; they need version = 2 (docs/1-dictionary.md)")
            }
            guard maskSize > 0, maskSize <= Int64(UInt16.max) else {
                throw file.error("/ (attribute mask_size)", "\(maskSize) cannot hold raster masks (1 ... \(UInt16.max))")
            }
            rasters = try MaskFile.read(file, images: n, concepts: concepts, size: Int(maskSize), sources: sources)
        }
        let dictionary = FaceDictionary(
            categories: categories, subgroups: subgroups, subgroupCategory: subgroupCategory,
            regions: regions, concepts: concepts, conceptRegion: conceptRegion, conceptType: conceptType,
            globalLabel: global.values, localLabel: local.values, ellipse: ellipse,
            maskSize: Int(maskSize), ellipseChi2: chi2, version: version, rasters: rasters, imageSources: sources)
        do {
            try dictionary.validate(source: path)
        } catch {
            throw StoreError(file: path, object: error.dataset, message: error.message)
        }
        return dictionary
    }

    /// The `version` attribute (1 when absent, as files written before it existed), checked before
    /// anything is read by what it says.
    static func version(of file: HDF5File) throws(StoreError) -> Int {
        guard file.hasAttribute("version") else { return 1 }
        let version: Int64 = try file.numericAttribute("version")
        guard FaceDictionary.versions.contains(Int(version)) else {
            throw file.error("/ (attribute version)", FaceDictionary.unknownVersion(Int(version)))
        }
        return Int(version)
    }

    static func vector<T: HDF5Element>(_ name: String, in file: HDF5File, count: Int, as: T.Type) throws(StoreError) -> [T] {
        let (shape, values) = try file.read(name, as: T.self)
        guard shape == [count] else { throw file.error(name, "shape \(shape), expected [\(count)]") }
        return values
    }

    /// Copies the taxonomy (`/global`, `/local` groups) into another file, so it explains itself.
    public static func writeTaxonomy(_ dictionary: FaceDictionary, to file: HDF5File) throws(StoreError) {
        try file.createGroup("/global")
        try file.createGroup("/local")
        try file.createStrings("/global/categories", dictionary.categories)
        try file.createStrings("/global/subgroups", dictionary.subgroups)
        try file.createDataset("/global/subgroup_category", shape: [dictionary.subgroupCount], values: dictionary.subgroupCategory)
        try file.createStrings("/local/regions", dictionary.regions)
        try file.createStrings("/local/concepts", dictionary.concepts)
        try file.createDataset("/local/concept_region", shape: [dictionary.conceptCount], values: dictionary.conceptRegion)
        try file.createDataset("/local/concept_type", shape: [dictionary.conceptCount], values: dictionary.conceptType)
    }
}
