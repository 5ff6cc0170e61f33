import Foundation
import HNDEngine
import HNDStore

/// Featured units with their top-activating probe images and the outline of their concept.
extension Page {
    mutating func unitCards(_ layer: LayerMaterial) throws -> String {
        let s = layer.snapshot
        guard let images else {
            return "<p class=\"note\">Pass <code>--dictionary D.h5</code> (a Face Dictionary with <code>/images/pixels</code>) to see unit \(requestedUnit ?? 0)’s top-activating probe images.</p>"
                + unitSummary(s, unit: requestedUnit ?? 0)
        }
        guard s.topImageCount > 0 else {
            return "<p class=\"note\">This snapshot file has no <code>top_images</code> dataset (written by an older hndd), so the top-activating images are unknown.</p>"
        }
        let units = requestedUnit.map { [$0] } ?? featuredUnits(s)
        guard !units.isEmpty else {
            return "<p class=\"note\">No unit is localised yet; choose one with <code>--unit U</code>.</p>"
        }
        var html = "<p class=\"note\">The snapshot file keeps each unit’s \(s.topImageCount) probe images with the largest maxima (<code>top_images</code>), not its activation maps, "
            + "so the unit’s thresholded activation cannot be drawn here. The yellow outline is the mask of the unit’s concept (its ellipse or raster, docs/1-dictionary.md) on images where the concept is present."
            + (requestedUnit == nil ? " Shown: the best-localised paired units, one per concept; choose another with <code>--unit U</code>." : "") + "</p>"
        for u in units {
            html += "<div class=\"unitcard\">" + unitSummary(s, unit: u) + (try strip(s, unit: u, images: images)) + "</div>"
        }
        return html
    }

    /// Up to four units to show: the paired units with the best IoU for their top concept, one per concept.
    func featuredUnits(_ s: LayerSnapshot) -> [Int] {
        let l = s.conceptCount
        var scored: [(unit: Int, concept: Int, iou: Float)] = []
        for u in 0..<s.units where s.topImages[u * s.topImageCount] >= 0 {
            if let c = outlinedConcept(s, unit: u) { scored.append((u, c, s.iou[u * l + c])) }
        }
        scored.sort { $0.iou != $1.iou ? $0.iou > $1.iou : $0.unit < $1.unit }
        var chosen: [Int] = [], concepts = Set<Int>()
        for entry in scored where chosen.count < 4 && s.isPaired(unit: entry.unit) && concepts.insert(entry.concept).inserted {
            chosen.append(entry.unit)
        }
        for entry in scored where chosen.count < 4 && !chosen.contains(entry.unit) && concepts.insert(entry.concept).inserted {
            chosen.append(entry.unit)
        }
        return chosen
    }

    /// The concept whose mask a unit's images are shown with: its most probable paired concept,
    /// else the Network Dissection label.
    func outlinedConcept(_ s: LayerSnapshot, unit u: Int) -> Int? {
        let l = s.conceptCount
        let paired = (0..<l).filter { s.localPaired[u * l + $0] != 0 }
        if let best = paired.max(by: { s.localProb[u * l + $0] < s.localProb[u * l + $1] }) { return best }
        let nd = Int(s.netdissectConcept[u])
        return nd >= 0 ? nd : nil
    }

    func unitSummary(_ s: LayerSnapshot, unit u: Int) -> String {
        let cells = unitCells(s, unit: u)
        return "<h4>Unit \(u)</h4><p>threshold T = \(cells.threshold) · region: \(cells.region) · Network Dissection: \(cells.netdissect)<br>"
            + "paired with: \(cells.paired.isEmpty ? "—" : cells.paired) · biased toward: \(cells.biased.isEmpty ? "—" : cells.biased)</p>"
    }

    mutating func strip(_ s: LayerSnapshot, unit u: Int, images: ProbeImages) throws -> String {
        let k = s.topImageCount
        let ids = (0..<k).map { Int(s.topImages[u * k + $0]) }.filter { $0 >= 0 }
        guard !ids.isEmpty else { return "<p class=\"note\">No probe image has reached this unit yet.</p>" }
        let concept = outlinedConcept(s, unit: u)
        let displayWidth = 88.0, gap = 10.0
        let aspect = Double(images.height) / Double(images.width)
        let displayHeight = displayWidth * aspect
        var parts: [String] = []
        for (i, id) in ids.enumerated() {
            let thumb = try thumbnail(id, images: images)
            let x = Double(i) * (displayWidth + gap), y = 2.0
            parts.append("<use href=\"#probe-\(id)\" transform=\"translate(\(Chart.n(x)) \(Chart.n(y))) scale(\(Markup.decimal(displayWidth / Double(thumb.width), digits: 4)))\"/>")
            var conceptNote: String?
            if let c = concept {
                switch try images.concept(c, in: id) {
                case .present(let outline):
                    if let svg = outline.svg(x: x, y: y, width: displayWidth, height: displayHeight, title: "\(taxonomy.concepts[c]) in image \(id)") {
                        parts.append(svg)
                    } else {
                        conceptNote = "\(taxonomy.concepts[c]): empty mask"
                    }
                case .absent: conceptNote = "no \(taxonomy.concepts[c])"
                case .notAnnotated: conceptNote = "\(taxonomy.concepts[c]) not annotated"
                }
            }
            parts.append(Chart.text("image \(id)", x: x + displayWidth / 2, y: y + displayHeight + 14, anchor: "middle", extra: "font-size=\"11\" fill=\"#333\""))
            if let conceptNote {
                let shown = Markup.fit(conceptNote, width: displayWidth, fontSize: 10)
                parts.append("<text x=\"\(Chart.n(x + displayWidth / 2))\" y=\"\(Chart.n(y + displayHeight + 27))\" text-anchor=\"middle\" font-size=\"10\" fill=\"#777\">\(Chart.title(conceptNote))\(Markup.escape(shown))</text>")
            }
        }
        let width = Double(ids.count) * (displayWidth + gap) - gap
        let label = "Unit \(u): top-activating probe images" + (concept.map { ", \(taxonomy.concepts[$0]) outlined" } ?? "")
        return Chart.svgOpen(width: width, height: displayHeight + 34, label: label) + parts.joined() + "</svg>"
            + "<p class=\"note\">Largest maximum first." + (concept.map { " Outlined: \(Markup.escape(taxonomy.concepts[$0]))." } ?? " The unit has no concept to outline.") + "</p>"
    }

    mutating func thumbnail(_ id: Int, images: ProbeImages) throws -> (width: Int, height: Int) {
        if let known = thumbnails[id] { return known }
        let thumb = try images.thumbnailPNG(image: id)
        thumbnailDefs.append("<image id=\"probe-\(id)\" width=\"\(thumb.width)\" height=\"\(thumb.height)\" href=\"data:image/png;base64,\(Data(thumb.png).base64EncodedString())\"/>")
        thumbnails[id] = (thumb.width, thumb.height)
        return (thumb.width, thumb.height)
    }
}
