import Foundation
import HNDEngine
import HNDStore

/// What `hndd report` was asked for.
public struct ReportRequest: Sendable {
    public var snapshotPath: String
    /// Empty: every layer with snapshots.
    public var layers: [String]
    /// A Face Dictionary with `/images/pixels`, for the top-activating image strips.
    public var dictionaryPath: String?
    /// Show the snapshot of this training step instead of the latest complete one.
    public var step: Int64?
    /// Show this unit's top-activating images instead of a few chosen ones.
    public var unit: Int?

    public init(snapshotPath: String, layers: [String] = [], dictionaryPath: String? = nil, step: Int64? = nil, unit: Int? = nil) {
        self.snapshotPath = snapshotPath
        self.layers = layers
        self.dictionaryPath = dictionaryPath
        self.step = step
        self.unit = unit
    }
}

/// One layer's material: the row shown, its counts, and the counts of every complete row of its run.
struct LayerMaterial {
    var rows: LayerRows
    var shown: SnapshotRow
    var snapshot: LayerSnapshot
    var summary: SnapshotSummary
    var timeline: [TimelinePoint]
}

/// One complete pass of the timeline: its counts, and the units paired with some local concept
/// (which `SnapshotSummary` counts per concept, not as a total).
struct TimelinePoint {
    var row: SnapshotRow
    var summary: SnapshotSummary
    var paired: Int

    init(row: SnapshotRow, snapshot: LayerSnapshot, taxonomy: SnapshotTaxonomy) {
        self.row = row
        summary = taxonomy.summary(of: snapshot)
        paired = (0..<snapshot.units).filter(snapshot.isPaired).count
    }
}

/// The whole report: one self-contained HTML page (inline SVG and CSS, no network).
public enum HTMLReport {
    /// A rendered page and, per layer, the row it shows.
    public struct Outcome {
        public var html: String
        public var layers: [(name: String, units: Int, row: SnapshotRow)]
    }

    /// Reads the files, checks the request (layers, step, unit) before any rendering, and renders.
    public static func render(_ request: ReportRequest, now: Date = Date()) throws -> Outcome {
        let reader = try SnapshotReader(path: request.snapshotPath)
        let names = try reader.resolveLayers(request.layers)
        var plans: [(rows: LayerRows, shown: SnapshotRow)] = []
        for name in names {
            let rows = try reader.layer(name)
            let shown = try rows.selectRow(step: request.step, path: reader.path)
            if let unit = request.unit, unit < 0 || unit >= rows.units {
                throw ReportError("--unit \(unit): layer \(name) has \(rows.units) units (0–\(rows.units - 1))")
            }
            plans.append((rows, shown))
        }
        let images = try request.dictionaryPath.map { try ProbeImages(path: $0, taxonomy: reader.taxonomy) }
        var materials: [LayerMaterial] = []
        for plan in plans {
            let snapshot = try reader.snapshot(plan.rows, row: plan.shown.index, detail: .everything)
            let timeline = try plan.rows.timelineRows(run: plan.shown.run).map { row in
                TimelinePoint(row: row, snapshot: try reader.snapshot(plan.rows, row: row.index, detail: .labels), taxonomy: reader.taxonomy)
            }
            materials.append(LayerMaterial(rows: plan.rows, shown: plan.shown, snapshot: snapshot,
                                           summary: reader.taxonomy.summary(of: snapshot), timeline: timeline))
        }
        var page = Page(path: reader.path, taxonomy: reader.taxonomy, images: images, requestedUnit: request.unit)
        let html = try page.render(materials, now: now)
        return Outcome(html: html, layers: materials.map { ($0.rows.name, $0.rows.units, $0.shown) })
    }
}

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
            + "Definitions: Teotia, Lapedriza, Ostadabbas, “Interpreting Face Inference Models using Hierarchical Network Dissection”, IJCV 2022; the exact formulas are in hndd’s SPEC §3.</footer>"
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
            html += "<figure>" + coverageChart(layers.map { ($0.rows.name, $0.snapshot, $0.summary) }, label: "Coverage per layer")
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
        html += stats(summary, snapshot: s)
        html += "<h3>Dissection report</h3>" + dissectionReport(s, summary)
        html += "<h3>Units per global subgroup</h3>" + subgroupChart(s, summary)
        html += "<h3>Regions and concept types</h3><div class=\"pair\">" + regionChart(summary) + typeChart(summary) + "</div>"
        html += "<h3>Coverage</h3><figure>" + coverageChart([(name, s, summary)], label: "Coverage of \(name)")
            + "<figcaption><b>Coverage</b> (Fig. 8): HND counts a unit as interpretable when it is biased toward a global subgroup (Stage I) "
            + "or paired with a local concept (Stage III); the Network Dissection baseline only when its best IoU reaches the floor.</figcaption></figure>"
        html += "<h3>Global concepts: every unit’s probabilities</h3>" + probabilityCharts(s)
        html += "<h3>Over training</h3>" + timeline(layer)
        if images != nil || requestedUnit != nil { html += "<h3>Top-activating probe images</h3>" + (try unitCards(layer)) }
        html += "<h3>Units</h3>" + unitTable(s)
        html += "<h3>Snapshots of this layer in the file</h3>" + rowTable(layer)
        return html + "</section>"
    }

    func stats(_ summary: SnapshotSummary, snapshot s: LayerSnapshot) -> String {
        let paired = (0..<s.units).filter(s.isPaired).count
        let items: [(Int, String, String)] = [
            (summary.interpretable, "interpretable", "interpretable (HND)"),
            (summary.biased, "biased", "biased toward a global subgroup"),
            (paired, "paired", "paired with a local concept"),
            (summary.localised, "localised", "localised in a region (Stage II)"),
            (summary.netdissect, "netdissect", "labelled by Network Dissection"),
        ]
        return "<div class=\"stats\">" + items.map { count, key, label in
            "<div class=\"stat\" data-stat=\"\(key)\"><b>\(Markup.integer(count))</b><span>\(label) · \(Markup.percent(count, of: summary.units))</span></div>"
        }.joined() + "</div>"
    }

    /// The subgroup a unit is most strongly biased toward: largest margin P_s − (1/S_g + 0.05).
    func strongestBias(_ s: LayerSnapshot, unit u: Int) -> Int? {
        let g = s.subgroupCount
        var best: Int?, bestMargin = -Double.infinity
        for sub in 0..<g where s.globalBiased[u * g + sub] != 0 {
            let margin = Double(s.globalProb[u * g + sub]) - taxonomy.biasThreshold(category: taxonomy.subgroupCategory[sub])
            if margin > bestMargin { best = sub; bestMargin = margin }
        }
        return best
    }

    func subgroupColour(_ sub: Int) -> String {
        let category = taxonomy.subgroupCategory[sub]
        let members = taxonomy.subgroupsOfCategory[category]
        return Palette.subgroup(category: category, shade: members.firstIndex(of: sub) ?? 0, of: members.count)
    }

    func subgroupLabel(_ sub: Int) -> String {
        "\(taxonomy.categories[taxonomy.subgroupCategory[sub]]): \(taxonomy.subgroups[sub])"
    }

    /// Units per local concept, split by the subgroup each is most biased toward, with the
    /// Network Dissection count under each bar (Fig. 1 and Fig. 6).
    func dissectionReport(_ s: LayerSnapshot, _ summary: SnapshotSummary) -> String {
        let l = s.conceptCount
        let strongest = (0..<s.units).map { strongestBias(s, unit: $0) }
        let conceptIndex = Dictionary(taxonomy.concepts.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let hnd = Dictionary(summary.conceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let baseline = Dictionary(summary.netdissectConceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let order = summary.conceptUnits.map(\.name) + summary.netdissectConceptUnits.map(\.name).filter { hnd[$0] == nil }
        var usedSubgroups = Set<Int>()
        var rows: [HorizontalBarChart.Row] = []
        for name in order {
            guard let c = conceptIndex[name] else { continue }
            var perSubgroup = [Int](repeating: 0, count: s.subgroupCount)
            var unbiased = 0
            for u in 0..<s.units where s.localPaired[u * l + c] != 0 {
                if let sub = strongest[u] { perSubgroup[sub] += 1 } else { unbiased += 1 }
            }
            let total = hnd[name] ?? 0
            var segments: [HorizontalBarChart.Segment] = []
            for (sub, count) in perSubgroup.enumerated() where count > 0 {
                usedSubgroups.insert(sub)
                segments.append(.init(value: Double(count), colour: subgroupColour(sub),
                                      title: "\(name): \(count) of \(total) paired units are most biased toward \(subgroupLabel(sub))"))
            }
            if unbiased > 0 {
                segments.append(.init(value: Double(unbiased), colour: Palette.noBias,
                                      title: "\(name): \(unbiased) of \(total) paired units are biased toward no global subgroup"))
            }
            let nd = baseline[name] ?? 0
            let kind = SnapshotTaxonomy.typeNames[Int(taxonomy.conceptType[c])]
            rows.append(.init(label: name, segments: segments, valueText: total > 0 ? Markup.integer(total) : "0",
                              title: "\(name) (\(kind), \(taxonomy.regions[taxonomy.conceptRegion[c]])): \(total) units paired by HND",
                              baseline: (Double(nd), Markup.integer(nd), "\(name): \(nd) units labelled by Network Dissection"),
                              data: [("concept", name), ("units", "\(total)"), ("netdissect", "\(nd)")]))
        }
        guard !rows.isEmpty else {
            return "<p class=\"note\">No unit is paired with a local concept, and Network Dissection labels none.</p>"
        }
        let unused = taxonomy.concepts.filter { hnd[$0] == nil && baseline[$0] == nil }
        let chart = HorizontalBarChart(rows: rows, axisLabel: "units (of \(Markup.integer(s.units)) in the layer)",
                                       label: "Units per local concept, HND and Network Dissection")
        var legend: [Chart.LegendItem] = usedSubgroups.sorted().map { .init(name: subgroupLabel($0), colour: subgroupColour($0)) }
        legend.append(.init(name: "biased toward no subgroup", colour: Palette.noBias))
        legend.append(.init(name: "Network Dissection baseline (thin bar)", colour: Palette.baseline))
        return "<figure>" + Chart.legend(legend) + chart.svg()
            + "<figcaption><b>Units per local concept</b> (the paper’s Fig. 1 and Fig. 6). The thick bar counts the units HND pairs with the concept "
            + "(Stage III: P &gt; 1.5/K within the unit’s region); its colours split them by the global subgroup each unit is most strongly biased toward "
            + "(largest P − (1/S + 0.05)); grey: no global bias. A unit paired with several concepts counts under each. "
            + "The thin dark bar under it counts the units the Network Dissection baseline labels with the concept (best IoU ≥ the floor)."
            + (unused.isEmpty ? "" : " No units for: \(Markup.escape(unused.joined(separator: ", "))).") + "</figcaption></figure>"
    }

    func subgroupChart(_ s: LayerSnapshot, _ summary: SnapshotSummary) -> String {
        var rows: [HorizontalBarChart.Row] = []
        for (g, category) in taxonomy.categories.enumerated() {
            let members = taxonomy.subgroupsOfCategory[g]
            let anyBiased = (0..<s.units).filter { u in members.contains { s.globalBiased[u * s.subgroupCount + $0] != 0 } }.count
            rows.append(.init(label: "\(category) — \(anyBiased) units biased (P ≥ \(Markup.decimal(taxonomy.biasThreshold(category: g))))", isHeader: true))
            for sub in members {
                let count = summary.subgroupUnits[sub].units
                rows.append(.init(label: taxonomy.subgroups[sub],
                                  segments: [.init(value: Double(count), colour: subgroupColour(sub),
                                                   title: "\(subgroupLabel(sub)): \(count) units biased")],
                                  valueText: "\(Markup.integer(count)) (\(Markup.percent(count, of: s.units)))"))
            }
        }
        let chart = HorizontalBarChart(rows: rows, axisLabel: "units biased toward the subgroup (of \(Markup.integer(s.units)))",
                                       label: "Units per global subgroup")
        return "<figure>" + chart.svg() + "<figcaption><b>Units per global subgroup</b> (Stage I): a unit is biased toward subgroup s "
            + "when P(s) ≥ 1/S + 0.05 among the S subgroups of its category; a unit can be biased in several categories.</figcaption></figure>"
    }

    func regionChart(_ summary: SnapshotSummary) -> String {
        var rows: [HorizontalBarChart.Row] = summary.unitsPerRegion.enumerated().map { r, count in
            .init(label: count.name, segments: [.init(value: Double(count.units), colour: Palette.distinct(r),
                                                     title: "\(count.name): \(count.units) units localised here")],
                  valueText: Markup.integer(count.units))
        }
        let unlocalised = summary.units - summary.localised
        rows.append(.init(label: "unlocalised", segments: [.init(value: Double(unlocalised), colour: Palette.noBias,
                                                                 title: "\(unlocalised) units whose best IoU is below the floor")],
                          valueText: Markup.integer(unlocalised)))
        let chart = HorizontalBarChart(rows: rows, axisLabel: "units", label: "Units per facial region", width: 460)
        return "<figure>" + chart.svg() + "<figcaption><b>Units per facial region</b> (Fig. 5a): the region of the concept with the unit’s best IoU (Stage II).</figcaption></figure>"
    }

    func typeChart(_ summary: SnapshotSummary) -> String {
        let rows: [HorizontalBarChart.Row] = summary.typeUnits.enumerated().map { t, count in
            .init(label: count.name, segments: [.init(value: Double(count.units), colour: Palette.distinct(t),
                                                     title: "\(count.units) units paired with at least one \(count.name) concept")],
                  valueText: Markup.integer(count.units))
        }
        let chart = HorizontalBarChart(rows: rows, axisLabel: "units", label: "Units per concept type", width: 460)
        return "<figure>" + chart.svg() + "<figcaption><b>Units per concept type</b> (Fig. 5b): units paired with at least one facial part, attribute or action unit; a unit paired with two types counts in both.</figcaption></figure>"
    }

    func coverageChart(_ layers: [(name: String, snapshot: LayerSnapshot, summary: SnapshotSummary)], label: String) -> String {
        let both = Palette.distinct[0], pairedOnly = Palette.distinct[5], biasedOnly = Palette.distinct[1]
        var rows: [HorizontalBarChart.Row] = []
        for layer in layers {
            let s = layer.snapshot, c = Double(max(s.units, 1))
            var counts = (both: 0, paired: 0, biased: 0)
            for u in 0..<s.units {
                switch (s.isPaired(unit: u), s.isBiased(unit: u)) {
                case (true, true): counts.both += 1
                case (true, false): counts.paired += 1
                case (false, true): counts.biased += 1
                default: break
                }
            }
            let interpretable = layer.summary.interpretable, nd = layer.summary.netdissect
            if layers.count > 1 { rows.append(.init(label: layer.name, isHeader: true)) }
            rows.append(.init(label: "HND", segments: [
                .init(value: 100 * Double(counts.both) / c, colour: both, title: "\(counts.both) units paired and biased"),
                .init(value: 100 * Double(counts.paired) / c, colour: pairedOnly, title: "\(counts.paired) units paired with a local concept, not biased"),
                .init(value: 100 * Double(counts.biased) / c, colour: biasedOnly, title: "\(counts.biased) units biased, not paired"),
            ], valueText: "\(Markup.percent(interpretable, of: s.units)) (\(Markup.integer(interpretable)) units)"))
            rows.append(.init(label: "Network Dissection", segments: [
                .init(value: 100 * Double(nd) / c, colour: Palette.baseline, title: "\(nd) units labelled by Network Dissection"),
            ], valueText: "\(Markup.percent(nd, of: s.units)) (\(Markup.integer(nd)) units)"))
        }
        let chart = HorizontalBarChart(rows: rows, axisLabel: "% of the layer’s units", label: label, maxValue: 100,
                                       integerAxis: false, tickFormat: { Markup.decimal($0, digits: 0) + " %" })
        return Chart.legend([
            .init(name: "paired and biased", colour: both), .init(name: "paired with a local concept only", colour: pairedOnly),
            .init(name: "biased toward a global subgroup only", colour: biasedOnly),
            .init(name: "Network Dissection baseline", colour: Palette.baseline),
        ]) + chart.svg()
    }

    /// Fig. 12: per category, each subgroup's probability over all units, sorted, as lines.
    func probabilityCharts(_ s: LayerSnapshot) -> String {
        let g = s.subgroupCount
        var html = "<div class=\"pair\">"
        for (category, name) in taxonomy.categories.enumerated() {
            let members = taxonomy.subgroupsOfCategory[category]
            guard !members.isEmpty else { continue }
            let threshold = taxonomy.biasThreshold(category: category)
            var series: [LineChart.Series] = []
            var legend: [Chart.LegendItem] = []
            for sub in members {
                let sorted = (0..<s.units).map { Double(s.globalProb[$0 * g + sub]) }.sorted(by: >)
                let biased = (0..<s.units).filter { s.globalBiased[$0 * g + sub] != 0 }.count
                series.append(.init(name: "\(taxonomy.subgroups[sub]): \(biased) biased units",
                                    colour: subgroupColour(sub), points: Self.thinned(sorted)))
                legend.append(.init(name: "\(taxonomy.subgroups[sub]) — \(biased) biased", colour: subgroupColour(sub), line: true))
            }
            let anyBiased = (0..<s.units).filter { u in members.contains { s.globalBiased[u * g + $0] != 0 } }.count
            let chart = LineChart(series: series, xLabel: "units, ranked by P (1 = highest)", yLabel: "P(subgroup) · Stage I",
                                  label: "Sorted probabilities for \(name)", width: 470, height: 250,
                                  xDomain: 1...Double(max(s.units, 2)), yDomain: 0...1, integerY: false, markers: false,
                                  horizontalRules: [.init(value: threshold, label: "bias threshold \(Markup.decimal(threshold))", colour: "#b91c1c")])
            html += "<figure><h4>\(Markup.escape(name)) — \(anyBiased) of \(Markup.integer(s.units)) units biased</h4>"
                + Chart.legend(legend) + chart.svg() + "</figure>"
        }
        html += "</div><p class=\"note\">The paper’s Fig. 12: for each subgroup, every unit’s Stage I probability, sorted from the highest; "
            + "units above the red dashed line (1/S + 0.05) are biased toward that subgroup.</p>"
        return html
    }

    /// A sorted curve as (rank, value) points; long curves keep 600 evenly spaced ranks and the
    /// last one (the curve is monotone, so nothing visible is lost).
    static func thinned(_ sorted: [Double]) -> [(x: Double, y: Double)] {
        let limit = 600
        if sorted.count <= limit { return sorted.enumerated().map { (Double($0 + 1), $1) } }
        var indices = (0..<limit).map { $0 * (sorted.count - 1) / (limit - 1) }
        if indices.last != sorted.count - 1 { indices.append(sorted.count - 1) }
        return indices.map { (Double($0 + 1), sorted[$0]) }
    }

    // MARK: Timeline

    func timeline(_ layer: LayerMaterial) -> String {
        let points = layer.timeline
        let run = layer.shown.run
        var html = ""
        let otherRuns = Dictionary(grouping: layer.rows.rows.filter { $0.run != run }, by: \.run)
        if points.isEmpty {
            html += "<p class=\"note\">Run “\(Markup.escape(run))” has no complete snapshot yet: the timeline starts with the first complete pass.</p>"
        } else if points.count == 1 {
            html += "<p class=\"note\">Run “\(Markup.escape(run))” has one complete snapshot (step \(Markup.integer(points[0].row.step))): the lines grow as the trainer sends more probe passes.</p>"
        }
        if !otherRuns.isEmpty {
            html += "<p class=\"note\">Showing run “\(Markup.escape(run))” (the run of the snapshot shown). Other runs in this file: "
                + otherRuns.keys.sorted().map { "“\(Markup.escape($0))” (\(otherRuns[$0]!.count) rows)" }.joined(separator: ", ")
                + "; pick one with <code>--step</code>.</p>"
        }
        guard !points.isEmpty else { return html }
        let steps = points.map { Double($0.row.step) }
        let partial = layer.rows.rows.filter { !$0.complete && $0.run == run }.map { row in
            (x: Double(row.step), title: "partial pass at step \(row.step): \(row.imagesSeen) of \(row.imagesTotal) images (row \(row.index + 1))")
        }
        let rule = LineChart.Rule(value: Double(layer.shown.step), label: "shown: step \(Markup.tick(Double(layer.shown.step)))", colour: "#555")
        func series(_ name: String, _ colour: String, key: String, dashed: Bool = false, _ value: (TimelinePoint) -> Int) -> LineChart.Series {
            .init(name: name, colour: colour, points: zip(steps, points).map { ($0, Double(value($1))) }, dashed: dashed, key: key)
        }
        let main = [
            series("interpretable (HND)", Palette.distinct[0], key: "interpretable") { $0.summary.interpretable },
            series("biased toward a subgroup", Palette.distinct[1], key: "biased") { $0.summary.biased },
            series("paired with a local concept", Palette.distinct[5], key: "paired") { $0.paired },
            series("Network Dissection baseline", Palette.baseline, key: "netdissect", dashed: true) { $0.summary.netdissect },
        ]
        let mainChart = LineChart(series: main, xLabel: "training step", yLabel: "units", label: "Interpretable units over training",
                                  verticalRule: rule, axisMarks: partial)
        html += "<figure>" + Chart.legend(main.map { .init(name: $0.name, colour: $0.colour, dashed: $0.dashed, line: true) }
            + (partial.isEmpty ? [] : [.init(name: "partial pass (left out of the lines)", colour: mainChart.axisMarkColour, marker: "▲")]))
            + mainChart.svg() + "<figcaption><b>Interpretable units over training</b>: one point per complete probe pass of run “\(Markup.escape(run))”"
            + " (\(points.count) passes, steps \(Markup.integer(points.first!.row.step))–\(Markup.integer(points.last!.row.step))).</figcaption></figure>"

        let regions = taxonomy.regions.enumerated().map { r, name in
            series(name, Palette.distinct(r), key: "region:\(name)") { $0.summary.unitsPerRegion[r].units }
        }
        let regionChart = LineChart(series: regions, xLabel: "training step", yLabel: "localised units", label: "Units per region over training",
                                    width: 470, height: 250, verticalRule: rule)
        html += "<div class=\"pair\"><figure><h4>Units per facial region</h4>" + Chart.legend(regions.map { .init(name: $0.name, colour: $0.colour, line: true) })
            + regionChart.svg() + "</figure>"
        for (category, name) in taxonomy.categories.enumerated() {
            let lines = taxonomy.subgroupsOfCategory[category].map { sub in
                series(taxonomy.subgroups[sub], subgroupColour(sub), key: "subgroup:\(sub)") { $0.summary.subgroupUnits[sub].units }
            }
            let chart = LineChart(series: lines, xLabel: "training step", yLabel: "biased units", label: "Units biased toward each \(name) subgroup over training",
                                  width: 470, height: 250, verticalRule: rule)
            html += "<figure><h4>Biased units: \(Markup.escape(name))</h4>" + Chart.legend(lines.map { .init(name: $0.name, colour: $0.colour, line: true) })
                + chart.svg() + "</figure>"
        }
        return html + "</div>"
    }

    // MARK: Probe images

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
            + "so the unit’s thresholded activation cannot be drawn here. The yellow outline is the mask of the unit’s concept (its ellipse or raster, SPEC §1) on images where the concept is present."
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

    // MARK: Tables

    struct UnitCells {
        var threshold: String
        var region: String
        var netdissect: String
        var paired: String
        var biased: String
    }

    func unitCells(_ s: LayerSnapshot, unit u: Int) -> UnitCells {
        let l = s.conceptCount, g = s.subgroupCount
        let region = s.region[u] >= 0 ? taxonomy.regions[Int(s.region[u])] : "—"
        let nd = Int(s.netdissectConcept[u])
        let netdissect = nd >= 0 ? "\(taxonomy.concepts[nd]) (IoU \(Markup.fixed(Double(s.iou[u * l + nd]))))" : "—"
        let paired = (0..<l).filter { s.localPaired[u * l + $0] != 0 }
            .sorted { s.localProb[u * l + $0] > s.localProb[u * l + $1] }
            .map { "\(taxonomy.concepts[$0]) P \(Markup.fixed(Double(s.localProb[u * l + $0]))) · IoU \(Markup.fixed(Double(s.iou[u * l + $0])))" }
        let biased = (0..<g).filter { s.globalBiased[u * g + $0] != 0 }
            .map { "\(taxonomy.subgroups[$0]) \(Markup.fixed(Double(s.globalProb[u * g + $0])))" }
        return UnitCells(threshold: Markup.significant(Double(s.threshold[u])), region: region, netdissect: netdissect,
                         paired: paired.joined(separator: "; "), biased: biased.joined(separator: ", "))
    }

    /// Every unit, 256 to a collapsible page so a 2,048-unit layer stays easy to scroll.
    func unitTable(_ s: LayerSnapshot) -> String {
        let pageSize = 256
        let head = "<table><thead><tr><th class=\"num\">unit</th><th class=\"num\">threshold T</th><th>region</th>"
            + "<th>Network Dissection (IoU)</th><th>paired with: P · IoU</th><th>biased toward: P</th></tr></thead><tbody>"
        var html = "<p class=\"note\">Threshold T: the unit’s activation quantile (Stage II). Paired: Stage III probability P and IoU; biased: Stage I probability P. "
            + "A blue left edge marks interpretable units.</p>"
        for start in stride(from: 0, to: s.units, by: pageSize) {
            let end = min(start + pageSize, s.units)
            let interpretable = (start..<end).filter(s.isInterpretable).count
            let open = s.units <= pageSize || (requestedUnit.map { (start..<end).contains($0) } ?? false)
            html += "<details\(open ? " open" : "")><summary>units \(start)–\(end - 1) (\(interpretable) interpretable)</summary>" + head
            for u in start..<end {
                let cells = unitCells(s, unit: u)
                var classes: [String] = []
                if s.isInterpretable(unit: u) { classes.append("interp") }
                if u == requestedUnit { classes.append("chosen") }
                html += "<tr\(classes.isEmpty ? "" : " class=\"\(classes.joined(separator: " "))\"")><td class=\"num\">\(u)</td><td class=\"num\">\(cells.threshold)</td>"
                    + "<td>\(Markup.escape(cells.region))</td><td>\(Markup.escape(cells.netdissect))</td>"
                    + "<td>\(Markup.escape(cells.paired))</td><td>\(Markup.escape(cells.biased))</td></tr>"
            }
            html += "</tbody></table></details>"
        }
        return html
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
