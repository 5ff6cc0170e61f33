import Foundation
import HNDEngine
import HNDStore

/// The training timeline: the counts of every complete pass of the shown run, step by step.
extension Page {
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
        var main = [
            series("interpretable (HND)", Palette.distinct[0], key: "interpretable") { $0.summary.interpretable },
            series("biased toward a subgroup", Palette.distinct[1], key: "biased") { $0.summary.biased },
            series("paired with a local concept", Palette.distinct[5], key: "paired") { $0.summary.paired },
            series("Network Dissection baseline", Palette.baseline, key: "netdissect", dashed: true) { $0.summary.netdissect },
        ]
        main += significanceSeries(points, steps: steps)
        let mainChart = LineChart(series: main, xLabel: "training step", yLabel: "units", label: "Interpretable units over training",
                                  verticalRule: rule, axisMarks: partial)
        html += "<figure>" + Chart.legend(main.map { .init(name: $0.name, colour: $0.colour, dashed: $0.dashed, line: true) }
            + (partial.isEmpty ? [] : [.init(name: "partial pass (left out of the lines)", colour: mainChart.axisMarkColour, marker: "▲")]))
            + mainChart.svg() + "<figcaption><b>Interpretable units over training</b>: one point per complete probe pass of run “\(Markup.escape(run))”"
            + " (\(points.count) passes, steps \(Markup.integer(points.first!.row.step))–\(Markup.integer(points.last!.row.step)))."
            + (main.contains { $0.key == "significant_interpretable" } ? " “Significant”: biased or paired with a Benjamini–Hochberg adjusted p ≤ \(FalseDiscovery.rate) under the permutation null." : "")
            + (main.contains { $0.key == "untrained" } ? " “Beyond the untrained network”: units biased toward a subgroup whose P rose since the run’s first complete pass by more than chance "
                + "(a per-unit test, Benjamini–Hochberg q = \(FalseDiscovery.rate); docs/3-numbers.md)." : "")
            + "</figcaption></figure>"

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
}

extension Page {
    /// The significant counts over training and, where tested against the run's first complete
    /// pass (the untrained network), the units biased beyond it; none when no pass holds the tests.
    func significanceSeries(_ points: [TimelinePoint], steps: [Double]) -> [LineChart.Series] {
        let tested = zip(steps, points).compactMap { step, p in p.summary.significant.map { (step, $0) } }
        guard !tested.isEmpty else { return [] }
        let beyond = zip(steps, points).compactMap { step, p in p.summary.beyondUntrained.map { (step, Double($0.units)) } }
        return [
            .init(name: "interpretable and significant", colour: Palette.distinct[0], points: tested.map { ($0.0, Double($0.1.interpretable)) },
                  dashed: true, key: "significant_interpretable"),
        ] + (beyond.isEmpty ? [] : [
            .init(name: "biased beyond the untrained network (step \(Markup.tick(beyond[0].0)) is the baseline)",
                  colour: "#999999", points: beyond, dashed: true, key: "untrained"),
        ])
    }
}
