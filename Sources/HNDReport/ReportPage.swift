import Foundation
import HNDEngine
import HNDStore

/// Builds the page. Holds the probe thumbnails already embedded, so each image is stored once
/// however many units show it.
struct Page {
    let path: String
    let taxonomy: SnapshotTaxonomy
    let images: ProbeImages?
    let requestedUnit: Int?
    /// Thumbnail sizes by image id; the images themselves go into one hidden `<defs>` as `#probe-ID`.
    var thumbnails: [Int: (width: Int, height: Int)] = [:]
    var thumbnailDefs: [String] = []

    init(path: String, taxonomy: SnapshotTaxonomy, images: ProbeImages?, requestedUnit: Int?) {
        self.path = path
        self.taxonomy = taxonomy
        self.images = images
        self.requestedUnit = requestedUnit
    }

    mutating func render(_ layers: [LayerMaterial], now: Date) throws -> String {
        var body = ""
        body += header(layers, now: now)
        for layer in layers { body += try section(layer) }
        body += "<footer>Written by <code>hndd report</code> on \(Markup.utc(now.timeIntervalSince1970)). "
            + "Definitions: Teotia, Lapedriza, Ostadabbas, “Interpreting Face Inference Models using Hierarchical Network Dissection”, IJCV 2022; the exact formulas are in hndd’s docs/3-numbers.md.</footer>"
        let defs = thumbnailDefs.isEmpty ? "" :
            "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\"><defs>"
            + "<clipPath id=\"unit-square\"><rect width=\"1\" height=\"1\"/></clipPath>"
            + thumbnailDefs.joined() + "</defs></svg>"
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>HND report — \(Markup.escape((path as NSString).lastPathComponent))</title>
        <style>\(Self.css)</style>
        </head><body>
        \(defs)\(body)
        <script>addEventListener("beforeprint",function(){document.querySelectorAll("details").forEach(function(d){d.open=true})});</script>
        </body></html>

        """
    }

    static let css = """
    :root{color-scheme:light}
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;background:#fff;max-width:1040px;margin:0 auto;padding:12px 28px 40px}
    h1{font-size:24px;margin:10px 0 4px}h2{font-size:20px;margin:36px 0 6px;padding-top:10px;border-top:3px solid #0072B2}
    h3{font-size:16px;margin:26px 0 4px}h4{font-size:14px;margin:14px 0 4px}
    p{margin:6px 0}.meta{color:#444}.note{color:#555;font-size:13px}code{font-size:12.5px;background:#f2f2f2;padding:0 3px;border-radius:3px}
    .warn{background:#fff4d6;border-left:4px solid #d97706;padding:6px 10px;margin:10px 0}
    figure{margin:14px 0 18px;break-inside:avoid}figcaption{color:#444;font-size:13px;margin-top:4px;max-width:820px}
    svg{max-width:100%;height:auto;display:block}
    .pair{display:flex;flex-wrap:wrap;gap:6px 28px}.pair figure{flex:1 1 440px;min-width:0}
    .legend{display:flex;flex-wrap:wrap;gap:3px 16px;font-size:12.5px;margin:4px 0 2px}
    .legend i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
    .stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px;margin:10px 0}
    .stat{border:1px solid #ddd;border-radius:6px;padding:6px 10px}.stat b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.stat span{color:#555;font-size:12.5px}
    table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{padding:2px 9px;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
    th{background:#f4f4f4;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
    tr.interp td:first-child{border-left:3px solid #0072B2}tr.chosen td{background:#fff4d6}
    .badge{display:inline-block;font-size:11.5px;padding:0 6px;border-radius:9px;background:#e8e8e8;color:#333}
    .badge.partial{background:#fde68a;color:#5c3d00}.badge.shown{background:#0072B2;color:#fff}
    details{margin:4px 0}summary{cursor:pointer;color:#0b4f8a}
    .unitcard{border:1px solid #ddd;border-radius:6px;padding:4px 12px 8px;margin:10px 0;break-inside:avoid}
    nav table td{white-space:nowrap}footer{margin-top:40px;color:#666;font-size:12px;border-top:1px solid #ddd;padding-top:8px}
    @media print{body{max-width:none;padding:0}h2{break-before:page}summary{color:#000}a{color:inherit;text-decoration:none}}
    """

    // MARK: Header

    func header(_ layers: [LayerMaterial], now: Date) -> String {
        var html = "<h1>Hierarchical Network Dissection report</h1>"
        html += "<p class=\"meta\">Snapshot file <code>\(Markup.escape(path))</code> · "
            + "\(taxonomy.subgroups.count) global subgroups in \(taxonomy.categories.count) categories "
            + "(\(Markup.escape(taxonomy.categories.joined(separator: ", ")))) · \(taxonomy.concepts.count) local concepts in "
            + "\(taxonomy.regions.count) regions (\(Markup.escape(taxonomy.regions.joined(separator: ", "))))"
            + (images.map { " · probe images from <code>\(Markup.escape($0.path))</code>" } ?? "") + "</p>"
        html += "<nav><table><thead><tr><th>layer</th><th class=\"num\">units</th><th>snapshot shown</th>"
            + "<th class=\"num\">interpretable (HND)</th><th class=\"num\">Network Dissection</th><th class=\"num\">rows: complete / partial</th></tr></thead><tbody>"
        for layer in layers {
            let s = layer.summary
            let partial = layer.rows.rows.filter { !$0.complete }.count
            html += "<tr><td><a href=\"#\(Markup.anchor(layer.rows.name))\">\(Markup.escape(layer.rows.name))</a></td>"
                + "<td class=\"num\">\(Markup.integer(s.units))</td><td>step \(Markup.integer(layer.shown.step))"
                + (layer.shown.complete ? "" : " <span class=\"badge partial\">partial</span>") + "</td>"
                + "<td class=\"num\">\(Markup.integer(s.interpretable)) (\(Markup.percent(s.interpretable, of: s.units)))</td>"
                + "<td class=\"num\">\(Markup.integer(s.netdissect)) (\(Markup.percent(s.netdissect, of: s.units)))</td>"
                + "<td class=\"num\">\(Markup.integer(layer.rows.rows.count - partial)) / \(Markup.integer(partial))</td></tr>"
        }
        html += "</tbody></table></nav>"
        if layers.count > 1 {
            html += "<figure>" + coverageChart(layers.map { ($0.rows.name, $0.summary) }, label: "Coverage per layer")
                + "<figcaption><b>Coverage per layer</b> (the paper’s Fig. 8): share of each layer’s units that are interpretable by HND "
                + "(biased toward a global subgroup or paired with a local concept) against the share the Network Dissection baseline labels.</figcaption></figure>"
        }
        return html
    }

    // MARK: A layer

    mutating func section(_ layer: LayerMaterial) throws -> String {
        let name = layer.rows.name, s = layer.snapshot, summary = layer.summary, row = layer.shown
        var html = "<section id=\"\(Markup.anchor(name))\" data-layer=\"\(Markup.escape(name))\" data-units=\"\(s.units)\" data-row=\"\(row.index)\" data-step=\"\(row.step)\" data-complete=\"\(row.complete ? 1 : 0)\"><h2>Layer <code>\(Markup.escape(name))</code></h2>"
        html += "<p class=\"meta\">\(Markup.integer(s.units)) units · row \(row.index + 1) of \(layer.rows.rows.count) · run “\(Markup.escape(row.run))” · "
            + "step \(Markup.integer(row.step)) · \(Markup.integer(row.imagesSeen)) of \(Markup.integer(row.imagesTotal)) probe images · written \(Markup.utc(row.timeUnix))"
            + (row.complete ? "" : " <span class=\"badge partial\">partial</span>") + "</p>"
        if !row.complete {
            let reason = layer.rows.rows.contains(where: \.complete)
                ? "this row was asked for with --step and no complete row has that step"
                : "the file holds no complete snapshot of this layer yet"
            html += "<p class=\"warn\">This snapshot is partial (\(reason)): its numbers cover the \(Markup.integer(row.imagesSeen)) images received so far, not the whole Face Dictionary.</p>"
        }
        html += stats(summary)
        html += "<h3>Dissection report</h3>" + dissectionReport(s, summary)
        html += "<h3>Units per global subgroup</h3>" + subgroupChart(summary)
        html += "<h3>Regions and concept types</h3><div class=\"pair\">" + regionChart(summary) + typeChart(summary) + "</div>"
        html += "<h3>Coverage</h3><figure>" + coverageChart([(name, summary)], label: "Coverage of \(name)")
            + "<figcaption><b>Coverage</b> (Fig. 8): HND counts a unit as interpretable when it is biased toward a global subgroup (Stage I) "
            + "or paired with a local concept (Stage III); the Network Dissection baseline only when its best IoU reaches the floor.</figcaption></figure>"
        html += "<h3>Global concepts: every unit’s probabilities</h3>" + probabilityCharts(s, summary)
        html += "<h3>Over training</h3>" + timeline(layer)
        if images != nil || requestedUnit != nil { html += "<h3>Top-activating probe images</h3>" + (try unitCards(layer)) }
        html += "<h3>Units</h3>" + unitTable(s)
        html += "<h3>Snapshots of this layer in the file</h3>" + rowTable(layer)
        return html + "</section>"
    }

    func stats(_ summary: SnapshotSummary) -> String {
        let items: [(Int, String, String)] = [
            (summary.interpretable, "interpretable", "interpretable (HND)"),
            (summary.biased, "biased", "biased toward a global subgroup"),
            (summary.paired, "paired", "paired with a local concept"),
            (summary.localised, "localised", "localised in a region (Stage II)"),
            (summary.netdissect, "netdissect", "labelled by Network Dissection"),
        ]
        let significant: [String: Int] = summary.significant.map {
            ["interpretable": $0.interpretable, "biased": $0.biased, "paired": $0.paired]
        } ?? [:]
        return "<div class=\"stats\">" + items.map { count, key, label in
            "<div class=\"stat\" data-stat=\"\(key)\"><b>\(Markup.integer(count))</b><span>\(label) · \(Markup.percent(count, of: summary.units))"
                + (significant[key].map { "<br>significant (q \(FalseDiscovery.rate)): <b data-significant=\"\(key)\" style=\"display:inline;font-size:14px\">\(Markup.integer($0))</b>" } ?? "")
                + (key == "biased" ? summary.beyondUntrained.map { "<br>beyond the untrained network: <b data-beyond-untrained=\"units\" style=\"display:inline;font-size:14px\">\(Markup.integer($0.units))</b>" } ?? "" : "")
                + "</span></div>"
        }.joined() + "</div>"
    }

    func subgroupColour(_ sub: Int) -> String {
        let category = Int(taxonomy.subgroupCategory[sub])
        let members = taxonomy.subgroupsOfCategory[category]
        return Palette.subgroup(category: category, shade: members.firstIndex(of: sub) ?? 0, of: members.count)
    }

    func subgroupLabel(_ sub: Int) -> String {
        "\(taxonomy.categories[Int(taxonomy.subgroupCategory[sub])]): \(taxonomy.subgroups[sub])"
    }

    func rowTable(_ layer: LayerMaterial) -> String {
        let rows = layer.rows.rows
        let partial = rows.filter { !$0.complete }.count
        var table = "<table><thead><tr><th class=\"num\">row</th><th>run</th><th class=\"num\">step</th><th class=\"num\">images</th><th></th><th>written</th></tr></thead><tbody>"
        for row in rows {
            var badges = row.complete ? "" : "<span class=\"badge partial\">partial</span> "
            if row.index == layer.shown.index { badges += "<span class=\"badge shown\">shown</span>" }
            table += "<tr><td class=\"num\">\(row.index + 1)</td><td>\(Markup.escape(row.run))</td><td class=\"num\">\(Markup.integer(row.step))</td>"
                + "<td class=\"num\">\(Markup.integer(row.imagesSeen)) / \(Markup.integer(row.imagesTotal))</td><td>\(badges)</td><td>\(Markup.utc(row.timeUnix))</td></tr>"
        }
        table += "</tbody></table>"
        let summary = "\(rows.count) rows: \(rows.count - partial) complete, \(partial) partial (a partial row is a pass that ended before every probe image arrived; it is left out of the timeline)"
        return rows.count <= 12 ? "<p class=\"note\">\(summary).</p>" + table : "<details><summary>\(summary)</summary>\(table)</details>"
    }
}
