import Foundation
import HNDEngine
import HNDStore

/// The dictionary's probe images (`/images/pixels`, docs/1-dictionary.md), read one image at a time — a real
/// dictionary holds gigabytes of pixels and a report needs a few dozen thumbnails.
public final class ProbeImages {
    public let path: String
    public let imageCount: Int
    public let height: Int
    public let width: Int
    public let ellipseChi2: Double
    /// The mask grid S, and whether raster masks (`/images/masks`, version 2) define the masks.
    public let maskSize: Int
    public let hasRasters: Bool
    let conceptCount: Int
    let file: HDF5File

    /// Thumbnails are shrunk by an integer factor until their longer side is at most this.
    public static let thumbnailSide = 64

    /// Opens the dictionary and checks that it has pixels and the snapshot file's taxonomy.
    public init(path: String, taxonomy: SnapshotTaxonomy) throws {
        self.path = path
        file = try HDF5File.open(path)
        if file.hasAttribute("format") {
            let format = try file.stringAttribute("format")
            guard format == DictionaryFile.format else {
                throw ReportError("\(path): not a Face Dictionary (format attribute \"\(format)\", expected \"\(DictionaryFile.format)\")")
            }
        }
        let concepts = try file.readStrings("/local/concepts")
        let subgroups = try file.readStrings("/global/subgroups")
        guard concepts == taxonomy.concepts, subgroups == taxonomy.subgroups else {
            throw ReportError("\(path): /local/concepts, /global/subgroups: not the taxonomy of the snapshot file; pass the dictionary the snapshots were made with")
        }
        guard file.exists("/images/pixels") else {
            throw ReportError("\(path): /images/pixels: missing; the top-image strips need the probe images (leave out --dictionary to report without them)")
        }
        let shape = try file.shape(of: "/images/pixels")
        guard shape.count == 4, shape[3] == 3, shape[1] > 0, shape[2] > 0 else {
            throw ReportError("\(path): /images/pixels: shape \(shape), expected [N, H, W, 3] (RGB, uint8)")
        }
        let labelShape = try file.shape(of: "/images/local_label")
        let ellipseShape = try file.shape(of: "/images/ellipse")
        guard labelShape == [shape[0], concepts.count], ellipseShape == [shape[0], concepts.count, 5] else {
            throw ReportError("\(path): /images/local_label \(labelShape) and /images/ellipse \(ellipseShape) do not match /images/pixels \(shape) and \(concepts.count) concepts")
        }
        imageCount = shape[0]
        height = shape[1]
        width = shape[2]
        conceptCount = concepts.count
        ellipseChi2 = file.hasAttribute("ellipse_chi2") ? try file.numericAttribute("ellipse_chi2") : FaceDictionary.defaultEllipseChi2
        let size: Int64 = try file.numericAttribute("mask_size")
        maskSize = Int(size)
        hasRasters = file.exists("/images/masks")
        if hasRasters {
            let rowBytes = (maskSize + 7) / 8
            guard maskSize > 0, try file.shape(of: "/images/masks") == [shape[0], concepts.count, maskSize, rowBytes] else {
                throw ReportError("\(path): /images/masks: shape \(try file.shape(of: "/images/masks")), expected [\(shape[0]), \(concepts.count), \(maskSize), \(rowBytes)]")
            }
        }
    }

    /// Integer shrink factor of the thumbnails.
    public var shrinkFactor: Int { max(1, (max(width, height) + Self.thumbnailSide - 1) / Self.thumbnailSide) }

    /// A thumbnail of `image` as PNG bytes: each output pixel is the rounded mean of a
    /// factor×factor block (a partial block at the right or bottom edge is dropped).
    public func thumbnailPNG(image: Int) throws -> (png: [UInt8], width: Int, height: Int) {
        try checkImage(image)
        var buffer: [Float] = []
        try file.readRows("/images/pixels", start: image, count: 1, into: &buffer)
        let f = shrinkFactor
        let w = max(1, width / f), h = max(1, height / f)
        let blockWidth = min(f, width), blockHeight = min(f, height)
        let count = blockWidth * blockHeight
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                for channel in 0..<3 {
                    var sum = 0
                    for dy in 0..<blockHeight {
                        for dx in 0..<blockWidth {
                            sum += Int(buffer[((y * f + dy) * width + x * f + dx) * 3 + channel])
                        }
                    }
                    rgb[(y * w + x) * 3 + channel] = UInt8(min(255, (sum + count / 2) / count))
                }
            }
        }
        return (PNGEncoder.encode(rgb: rgb, width: w, height: h), w, h)
    }

    /// What the dictionary says of concept `c` in `image`.
    public enum ConceptState: Equatable {
        case present(outline: MaskOutline)
        case absent
        case notAnnotated
    }

    public func concept(_ c: Int, in image: Int) throws -> ConceptState {
        try checkImage(image)
        var buffer: [Float] = []
        try file.readRows("/images/local_label", start: image, count: 1, into: &buffer)
        switch buffer[c] {
        case 1:
            if hasRasters { return .present(outline: .raster(try rasterEdges(c, in: image))) }
            try file.readRows("/images/ellipse", start: image, count: 1, into: &buffer)
            return .present(outline: .ellipse(EllipseOutline(Array(buffer[(c * 5)..<(c * 5 + 5)]), chi2: ellipseChi2)))
        case 0: return .absent
        default: return .notAnnotated
        }
    }

    /// The outline of concept `c`'s raster mask on `image`, read from its row of `/images/masks`.
    func rasterEdges(_ c: Int, in image: Int) throws -> RasterEdges {
        var packed: [UInt8] = []
        try file.readRows("/images/masks", start: image, count: 1, into: &packed)
        var rasters = MaskRasters(size: maskSize, conceptCount: 1)
        let maskBytes = maskSize * rasters.bytesPerRow
        let valid = packed.withUnsafeBufferPointer { rasters.appendPacked($0.baseAddress! + c * maskBytes) }
        guard valid else { throw ReportError("\(path): /images/masks: image \(image), concept \(c): padding bits are set (run hndd dictionary check)") }
        return RasterEdges(rasters.bitmap(image: 0, concept: 0), size: maskSize)
    }

    func checkImage(_ image: Int) throws {
        guard image >= 0, image < imageCount else {
            throw ReportError("\(path): /images/pixels: the snapshot file names image \(image), but the dictionary has \(imageCount) images; pass the dictionary the snapshots were made with")
        }
    }
}

/// The outline of a concept's mask on a probe image, drawn over its thumbnail.
public enum MaskOutline: Equatable {
    /// docs/1-dictionary.md's ellipse (nil: singular, the mask is empty).
    case ellipse(EllipseOutline?)
    /// A raster mask's boundary.
    case raster(RasterEdges)

    /// The outline as an SVG group over the thumbnail at (x, y), `width`×`height`; nil when the
    /// mask is empty. Dark under yellow, so that it shows on any face.
    func svg(x: Double, y: Double, width: Double, height: Double, title: String) -> String? {
        let element: (tag: String, attributes: String)
        switch self {
        case .ellipse(nil): return nil
        case .ellipse(let e?):
            let cx = Markup.decimal(e.cx, digits: 4), cy = Markup.decimal(e.cy, digits: 4)
            element = ("ellipse", "cx=\"\(cx)\" cy=\"\(cy)\" rx=\"\(Markup.decimal(e.rx, digits: 4))\" ry=\"\(Markup.decimal(e.ry, digits: 4))\" transform=\"rotate(\(Markup.decimal(e.degrees, digits: 2)) \(cx) \(cy))\" fill=\"none\" vector-effect=\"non-scaling-stroke\"")
        case .raster(let edges):
            guard !edges.isEmpty else { return nil }
            element = ("path", "d=\"\(edges.path)\" fill=\"none\" stroke-linecap=\"square\" vector-effect=\"non-scaling-stroke\"")
        }
        let under = "stroke=\"#000\" stroke-opacity=\"0.7\" stroke-width=\"3.5\"", over = "stroke=\"#ffd400\" stroke-width=\"1.6\""
        return "<g transform=\"translate(\(Chart.n(x)) \(Chart.n(y))) scale(\(Chart.n(width)) \(Chart.n(height)))\" clip-path=\"url(#unit-square)\">"
            + "<\(element.tag) \(element.attributes) \(under)/><\(element.tag) \(element.attributes) \(over)/>"
            + Chart.title(title) + "</g>"
    }
}

/// The boundary of a raster mask: every side of a mask pixel whose neighbour across it is
/// outside the mask (or off the grid), joined into straight segments, in normalised coordinates.
public struct RasterEdges: Equatable {
    /// Horizontal segments (grid line y, from x0 to x1) and vertical ones (grid line x, y0 to y1),
    /// in pixel units.
    public private(set) var horizontal: [(line: Int, from: Int, to: Int)] = []
    public private(set) var vertical: [(line: Int, from: Int, to: Int)] = []
    public let size: Int

    public var isEmpty: Bool { horizontal.isEmpty && vertical.isEmpty }

    /// `mask`: S×S, row-major.
    public init(_ mask: [Bool], size s: Int) {
        size = s
        func inside(_ row: Int, _ col: Int) -> Bool { row >= 0 && row < s && col >= 0 && col < s && mask[row * s + col] }
        // A side is on the boundary when exactly one of the two pixels it separates is inside.
        for line in 0...s {
            var start: Int?
            for col in 0...s {
                let edge = col < s && inside(line - 1, col) != inside(line, col)
                if edge, start == nil { start = col }
                if !edge, let from = start { horizontal.append((line, from, col)); start = nil }
            }
        }
        for line in 0...s {
            var start: Int?
            for row in 0...s {
                let edge = row < s && inside(row, line - 1) != inside(row, line)
                if edge, start == nil { start = row }
                if !edge, let from = start { vertical.append((line, from, row)); start = nil }
            }
        }
    }

    /// The SVG path data, in normalised image coordinates (the grid spans [0, 1]).
    var path: String {
        let scale = 1 / Double(size)
        func n(_ v: Int) -> String { Markup.decimal(Double(v) * scale, digits: 4) }
        return (horizontal.map { "M\(n($0.from)) \(n($0.line))H\(n($0.to))" } + vertical.map { "M\(n($0.line)) \(n($0.from))V\(n($0.to))" }).joined()
    }

    public static func == (a: RasterEdges, b: RasterEdges) -> Bool {
        a.size == b.size && a.horizontal.elementsEqual(b.horizontal, by: ==) && a.vertical.elementsEqual(b.vertical, by: ==)
    }
}

/// The χ² contour of a concept's Gaussian ellipse (docs/1-dictionary.md) as SVG ellipse parameters in
/// normalised image coordinates: the boundary of the concept's mask.
public struct EllipseOutline: Equatable {
    var cx: Double, cy: Double, rx: Double, ry: Double
    /// Rotation of the `rx` axis, degrees, clockwise on screen (y points down).
    var degrees: Double

    /// nil for a singular covariance (whose mask is empty) or a non-finite ellipse.
    init?(_ e: [Float], chi2: Double) {
        guard e.count == 5, e.allSatisfy(\.isFinite) else { return nil }
        let sxx = Double(e[2]), sxy = Double(e[3]), syy = Double(e[4])
        let mean = (sxx + syy) / 2, spread = (((sxx - syy) / 2) * ((sxx - syy) / 2) + sxy * sxy).squareRoot()
        let major = mean + spread, minor = mean - spread
        guard minor > 0, sxx * syy - sxy * sxy > 0 else { return nil }
        cx = Double(e[0])
        cy = Double(e[1])
        rx = (chi2 * major).squareRoot()
        ry = (chi2 * minor).squareRoot()
        degrees = 0.5 * atan2(2 * sxy, sxx - syy) * 180 / .pi
    }
}
