import Foundation
import HNDStore

/// The dictionary's probe images (`/images/pixels`, SPEC §1), read one image at a time — a real
/// dictionary holds gigabytes of pixels and a report needs a few dozen thumbnails.
public final class ProbeImages {
    public let path: String
    public let imageCount: Int
    public let height: Int
    public let width: Int
    public let ellipseChi2: Double
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
            guard format == "hndd-dictionary" else {
                throw ReportError("\(path): not a Face Dictionary (format attribute \"\(format)\", expected \"hndd-dictionary\")")
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
        ellipseChi2 = file.hasAttribute("ellipse_chi2") ? try file.numericAttribute("ellipse_chi2") : 5.991
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
        case present(ellipse: [Float])
        case absent
        case notAnnotated
    }

    public func concept(_ c: Int, in image: Int) throws -> ConceptState {
        try checkImage(image)
        var buffer: [Float] = []
        try file.readRows("/images/local_label", start: image, count: 1, into: &buffer)
        switch buffer[c] {
        case 1:
            try file.readRows("/images/ellipse", start: image, count: 1, into: &buffer)
            return .present(ellipse: Array(buffer[(c * 5)..<(c * 5 + 5)]))
        case 0: return .absent
        default: return .notAnnotated
        }
    }

    func checkImage(_ image: Int) throws {
        guard image >= 0, image < imageCount else {
            throw ReportError("\(path): /images/pixels: the snapshot file names image \(image), but the dictionary has \(imageCount) images; pass the dictionary the snapshots were made with")
        }
    }
}

/// The χ² contour of a concept's Gaussian ellipse (SPEC §1) as SVG ellipse parameters in
/// normalised image coordinates: the boundary of the concept's mask.
struct EllipseOutline {
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
