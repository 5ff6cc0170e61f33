import Foundation
import HNDEngine
import HNDStore

/// The charts of one snapshot: the dissection report, units per subgroup, region and concept type,
/// coverage and the sorted Stage I probabilities. Every count comes from `SnapshotSummary`.
extension Page {
    /// Units per local concept, split by the subgroup each is most biased toward, with the
    /// Network Dissection count under each bar (Fig. 1 and Fig. 6).
    func dissectionReport(_ s: LayerSnapshot, _ summary: SnapshotSummary) -> String {
        let split = SnapshotSummary.pairedUnitsByStrongestBias(s, taxonomy: taxonomy)
        let conceptIndex = Dictionary(taxonomy.concepts.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let hnd = Dictionary(summary.conceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let baseline = Dictionary(summary.netdissectConceptUnits.map { ($0.name, $0.units) }, uniquingKeysWith: +)
        let order = summary.conceptUnits.map(\.name) + summary.netdissectConceptUnits.map(\.name).filter { hnd[$0] == nil }
        var usedSubgroups = Set<Int>()
        var rows: [HorizontalBarChart.Row] = []
        for name in order {
            guard let c = conceptIndex[name] else { continue }
            let perSubgroup = split[c].dropLast(), unbiased = split[c].last!
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
            let kind = FaceDictionary.ConceptType.names[Int(taxonomy.conceptType[c])]
            rows.append(.init(label: name, segments: segments, valueText: total > 0 ? Markup.integer(total) : "0",
                              title: "\(name) (\(kind), \(taxonomy.regions[Int(taxonomy.conceptRegion[c])])): \(total) units paired by HND",
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

    func subgroupChart(_ summary: SnapshotSummary) -> String {
        var rows: [HorizontalBarChart.Row] = []
        for (g, category) in taxonomy.categories.enumerated() {
            let members = taxonomy.subgroupsOfCategory[g]
            let anyBiased = summary.categoryUnits[g].units
            rows.append(.init(label: "\(category) — \(anyBiased) units biased (P ≥ \(Markup.decimal(taxonomy.biasThreshold(category: g))))", isHeader: true))
            for sub in members {
                let count = summary.subgroupUnits[sub].units
                rows.append(.init(label: taxonomy.subgroups[sub],
                                  segments: [.init(value: Double(count), colour: subgroupColour(sub),
                                                   title: "\(subgroupLabel(sub)): \(count) units biased")],
                                  valueText: "\(Markup.integer(count)) (\(Markup.percent(count, of: summary.units)))"))
            }
        }
        let chart = HorizontalBarChart(rows: rows, axisLabel: "units biased toward the subgroup (of \(Markup.integer(summary.units)))",
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

    func coverageChart(_ layers: [(name: String, summary: SnapshotSummary)], label: String) -> String {
        let both = Palette.distinct[0], pairedOnly = Palette.distinct[5], biasedOnly = Palette.distinct[1]
        var rows: [HorizontalBarChart.Row] = []
        for layer in layers {
            let units = layer.summary.units, c = Double(max(units, 1))
            let counts = (both: layer.summary.coverage.pairedAndBiased, paired: layer.summary.coverage.pairedOnly,
                          biased: layer.summary.coverage.biasedOnly)
            let interpretable = layer.summary.interpretable, nd = layer.summary.netdissect
            if layers.count > 1 { rows.append(.init(label: layer.name, isHeader: true)) }
            rows.append(.init(label: "HND", segments: [
                .init(value: 100 * Double(counts.both) / c, colour: both, title: "\(counts.both) units paired and biased"),
                .init(value: 100 * Double(counts.paired) / c, colour: pairedOnly, title: "\(counts.paired) units paired with a local concept, not biased"),
                .init(value: 100 * Double(counts.biased) / c, colour: biasedOnly, title: "\(counts.biased) units biased, not paired"),
            ], valueText: "\(Markup.percent(interpretable, of: units)) (\(Markup.integer(interpretable)) units)"))
            rows.append(.init(label: "Network Dissection", segments: [
                .init(value: 100 * Double(nd) / c, colour: Palette.baseline, title: "\(nd) units labelled by Network Dissection"),
            ], valueText: "\(Markup.percent(nd, of: units)) (\(Markup.integer(nd)) units)"))
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
    func probabilityCharts(_ s: LayerSnapshot, _ summary: SnapshotSummary) -> String {
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
                let biased = summary.subgroupUnits[sub].units
                series.append(.init(name: "\(taxonomy.subgroups[sub]): \(biased) biased units",
                                    colour: subgroupColour(sub), points: Self.thinned(sorted)))
                legend.append(.init(name: "\(taxonomy.subgroups[sub]) — \(biased) biased", colour: subgroupColour(sub), line: true))
            }
            let anyBiased = summary.categoryUnits[category].units
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
}
