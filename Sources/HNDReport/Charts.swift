import Foundation

/// The report's figures as inline SVG. Every chart lays its text out from estimated widths so
/// labels never overlap, labels its axes with their units, and carries a `<title>` on each mark
/// so exact numbers show on hover. Legends are HTML next to the SVG: they wrap instead of clipping.
enum Chart {
    static let fontSize = 12.0
    static let font = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif\" font-size=\"12\""
    static let gridColour = "#e4e4e4"
    static let axisColour = "#6b6b6b"
    static let textColour = "#222"

    static func svgOpen(width: Double, height: Double, label: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(n(width)) \(n(height))\" width=\"\(n(width))\" height=\"\(n(height))\" "
            + "role=\"img\" aria-label=\"\(Markup.escape(label))\" \(font) fill=\"\(textColour)\"><title>\(Markup.escape(label))</title>"
    }

    /// A coordinate with at most one decimal: keeps SVG small.
    static func n(_ value: Double) -> String { Markup.decimal(value, digits: 1) }

    static func text(_ content: String, x: Double, y: Double, anchor: String = "start", extra: String = "") -> String {
        "<text x=\"\(n(x))\" y=\"\(n(y))\"\(anchor == "start" ? "" : " text-anchor=\"\(anchor)\"")\(extra.isEmpty ? "" : " " + extra)>\(Markup.escape(content))</text>"
    }

    static func title(_ content: String) -> String { "<title>\(Markup.escape(content))</title>" }

    struct LegendItem {
        var name: String
        var colour: String
        var dashed = false
        var line = false
        /// A character drawn in the colour instead of a swatch, e.g. "▲".
        var marker: String? = nil
    }

    static func legend(_ items: [LegendItem]) -> String {
        guard !items.isEmpty else { return "" }
        return "<div class=\"legend\">" + items.map { item in
            if let marker = item.marker {
                return "<span><b style=\"color:\(item.colour);margin-right:5px\">\(Markup.escape(marker))</b>\(Markup.escape(item.name))</span>"
            }
            let style = item.line
                ? "border-top:\(item.dashed ? "2px dashed" : "3px solid") \(item.colour);height:0;margin-bottom:3px"
                : "background:\(item.colour)"
            return "<span><i style=\"\(style)\"></i>\(Markup.escape(item.name))</span>"
        }.joined() + "</div>"
    }
}

/// Horizontal bars, optionally stacked, optionally with a thin baseline bar under each: the
/// paper's dissection report, with the Network Dissection count beside HND's.
struct HorizontalBarChart {
    struct Segment {
        var value: Double
        var colour: String
        var title: String
    }

    struct Row {
        var label: String
        var segments: [Segment] = []
        /// Text after the bar, e.g. the count.
        var valueText = ""
        var title = ""
        /// A thin grey bar under the main one, e.g. the Network Dissection baseline.
        var baseline: (value: Double, text: String, title: String)? = nil
        /// A bold group heading instead of a bar.
        var isHeader = false
        /// `data-` attributes on the row's group, for programs that read the page.
        var data: [(String, String)] = []
    }

    var rows: [Row]
    var axisLabel: String
    var label: String
    var width = 760.0
    var maxValue: Double? = nil
    var integerAxis = true
    var tickFormat: (Double) -> String = Markup.tick
    var baselineColour = "#555"

    func svg() -> String {
        let fs = Chart.fontSize
        let labelWidth = min(240, (rows.map { Markup.textWidth($0.label, fontSize: fs, bold: $0.isHeader) }.max() ?? 40) + 6)
        let valueWidth = rows.flatMap { [$0.valueText, $0.baseline?.text ?? ""] }
            .map { Markup.textWidth($0, fontSize: fs) }.max() ?? 0
        let left = labelWidth + 10, right = width - valueWidth - 12
        let plotWidth = max(80, right - left)
        let dataMax = rows.flatMap { [$0.segments.reduce(0) { $0 + $1.value }, $0.baseline?.value ?? 0] }.max() ?? 0
        let top = max(maxValue ?? 0, dataMax, integerAxis ? 1 : 1e-9)
        let ticks = Ticks.fitting(0, top, length: plotWidth, integers: integerAxis, fontSize: fs, label: tickFormat)
        let domain = max(top, ticks.last ?? top)
        func x(_ v: Double) -> Double { left + plotWidth * v / domain }

        let barHeight = 13.0, baselineHeight = 6.0, gap = 6.0
        var y = 6.0
        var marks: [String] = []
        for row in rows {
            if row.isHeader {
                y += 4
                marks.append(Chart.text(row.label, x: 0, y: y + 12, extra: "font-weight=\"600\""))
                y += 18
                continue
            }
            if !row.data.isEmpty {
                marks.append("<g" + row.data.map { " data-\($0.0)=\"\(Markup.escape($0.1))\"" }.joined() + ">")
            }
            let shown = Markup.fit(row.label, width: labelWidth, fontSize: fs)
            let labelTitle = shown == row.label ? "" : Chart.title(row.label)
            marks.append("<text x=\"\(Chart.n(labelWidth))\" y=\"\(Chart.n(y + barHeight - 2.5))\" text-anchor=\"end\">\(labelTitle)\(Markup.escape(shown))</text>")
            var start = 0.0
            for segment in row.segments where segment.value > 0 {
                let x0 = x(start), x1 = x(start + segment.value)
                marks.append("<rect x=\"\(Chart.n(x0))\" y=\"\(Chart.n(y))\" width=\"\(Chart.n(max(x1 - x0, 0.8)))\" height=\"\(Chart.n(barHeight))\" fill=\"\(segment.colour)\" stroke=\"#fff\" stroke-width=\"0.6\">\(Chart.title(segment.title))</rect>")
                start += segment.value
            }
            if !row.valueText.isEmpty {
                marks.append("<text x=\"\(Chart.n(x(start) + 4))\" y=\"\(Chart.n(y + barHeight - 2.5))\">\(row.title.isEmpty ? "" : Chart.title(row.title))\(Markup.escape(row.valueText))</text>")
            }
            y += barHeight
            if let baseline = row.baseline {
                y += 1.5
                if baseline.value > 0 {
                    marks.append("<rect x=\"\(Chart.n(left))\" y=\"\(Chart.n(y))\" width=\"\(Chart.n(max(x(baseline.value) - left, 0.8)))\" height=\"\(Chart.n(baselineHeight))\" fill=\"\(baselineColour)\">\(Chart.title(baseline.title))</rect>")
                }
                marks.append("<text x=\"\(Chart.n(x(baseline.value) + 4))\" y=\"\(Chart.n(y + baselineHeight + 1.5))\" font-size=\"10\" fill=\"\(baselineColour)\">\(Chart.title(baseline.title))\(Markup.escape(baseline.text))</text>")
                y += baselineHeight
            }
            if !row.data.isEmpty { marks.append("</g>") }
            y += gap
        }
        let plotBottom = y
        var axis: [String] = []
        for tick in ticks {
            let tx = x(tick)
            axis.append("<line x1=\"\(Chart.n(tx))\" x2=\"\(Chart.n(tx))\" y1=\"2\" y2=\"\(Chart.n(plotBottom))\" stroke=\"\(Chart.gridColour)\"/>")
            axis.append(Chart.text(tickFormat(tick), x: tx, y: plotBottom + 15, anchor: "middle", extra: "fill=\"\(Chart.axisColour)\""))
        }
        axis.append("<line x1=\"\(Chart.n(left))\" x2=\"\(Chart.n(left))\" y1=\"2\" y2=\"\(Chart.n(plotBottom))\" stroke=\"\(Chart.axisColour)\"/>")
        axis.append(Chart.text(axisLabel, x: left + plotWidth / 2, y: plotBottom + 32, anchor: "middle", extra: "fill=\"\(Chart.axisColour)\""))
        let height = plotBottom + 40
        return Chart.svgOpen(width: width, height: height, label: label) + axis.joined() + marks.joined() + "</svg>"
    }
}

/// Lines against a numeric x axis: the training timeline and the sorted probabilities of Fig. 12.
struct LineChart {
    struct Series {
        var name: String
        var colour: String
        var points: [(x: Double, y: Double)]
        var dashed = false
        var strokeWidth = 2.0
        /// When set, the points go into `data-series`/`data-x`/`data-values` attributes, for
        /// programs that read the page.
        var key: String? = nil
    }

    struct Rule {
        var value: Double
        var label: String
        var colour = "#888"
    }

    var series: [Series]
    var xLabel: String
    var yLabel: String
    var label: String
    var width = 760.0
    var height = 260.0
    var xDomain: ClosedRange<Double>? = nil
    var yDomain: ClosedRange<Double>? = nil
    var integerX = true
    var integerY = true
    /// Dots on the points; on by default when the lines are short.
    var markers: Bool? = nil
    var verticalRule: Rule? = nil
    var horizontalRules: [Rule] = []
    /// Small ticks under the x axis, e.g. partial passes: (x, hover text).
    var axisMarks: [(x: Double, title: String)] = []
    var axisMarkColour = "#c2410c"

    func svg() -> String {
        let fs = Chart.fontSize
        let allX = series.flatMap { $0.points.map(\.x) } + axisMarks.map(\.x) + (verticalRule.map { [$0.value] } ?? [])
        let allY = series.flatMap { $0.points.map(\.y) } + horizontalRules.map(\.value)
        var xRange = xDomain ?? ((allX.min() ?? 0)...(allX.max() ?? 1))
        if xRange.upperBound <= xRange.lowerBound {
            let pad = max(1, abs(xRange.lowerBound) * 0.05)
            xRange = (xRange.lowerBound - pad)...(xRange.upperBound + pad)
        }
        // Headroom above the highest point, so a line never runs along the frame.
        var yRange = yDomain ?? (min(0, allY.min() ?? 0)...(max(allY.max() ?? 1, integerY ? 1 : 1e-9) * 1.04))
        if yRange.upperBound <= yRange.lowerBound { yRange = yRange.lowerBound...(yRange.lowerBound + 1) }
        // The vertical rule's label sits above the plot, where no line can run through it.
        let top = verticalRule == nil ? 8.0 : 22.0
        let plotHeight = height - 58 - top
        var yTicks = Ticks.nice(yRange.lowerBound, yRange.upperBound, maxCount: max(3, Int(plotHeight / 36)), integers: integerY)
        if yDomain == nil, yTicks.count >= 2, let last = yTicks.last, last < yRange.upperBound {
            yTicks.append(last + (yTicks[1] - yTicks[0]))
        }
        if let last = yTicks.last, last > yRange.upperBound { yRange = yRange.lowerBound...last }
        let yTickWidth = yTicks.map { Markup.textWidth(Markup.tick($0), fontSize: fs) }.max() ?? 10
        let left = 22 + yTickWidth + 8, right = width - 16
        let bottom = top + plotHeight
        let plotWidth = right - left
        func px(_ v: Double) -> Double { left + plotWidth * (v - xRange.lowerBound) / (xRange.upperBound - xRange.lowerBound) }
        func py(_ v: Double) -> Double { bottom - plotHeight * (v - yRange.lowerBound) / (yRange.upperBound - yRange.lowerBound) }
        let xTicks = Ticks.fitting(xRange.lowerBound, xRange.upperBound, length: plotWidth, integers: integerX, fontSize: fs, label: Markup.tick)

        var parts: [String] = []
        for tick in yTicks {
            parts.append("<line x1=\"\(Chart.n(left))\" x2=\"\(Chart.n(right))\" y1=\"\(Chart.n(py(tick)))\" y2=\"\(Chart.n(py(tick)))\" stroke=\"\(Chart.gridColour)\"/>")
            parts.append(Chart.text(Markup.tick(tick), x: left - 6, y: py(tick) + 4, anchor: "end", extra: "fill=\"\(Chart.axisColour)\""))
        }
        for tick in xTicks {
            parts.append("<line x1=\"\(Chart.n(px(tick)))\" x2=\"\(Chart.n(px(tick)))\" y1=\"\(Chart.n(bottom))\" y2=\"\(Chart.n(bottom + 4))\" stroke=\"\(Chart.axisColour)\"/>")
            parts.append(Chart.text(Markup.tick(tick), x: px(tick), y: bottom + 17, anchor: "middle", extra: "fill=\"\(Chart.axisColour)\""))
        }
        parts.append("<path d=\"M\(Chart.n(left)) \(Chart.n(top))V\(Chart.n(bottom))H\(Chart.n(right))\" fill=\"none\" stroke=\"\(Chart.axisColour)\"/>")
        parts.append(Chart.text(xLabel, x: left + plotWidth / 2, y: bottom + 36, anchor: "middle", extra: "fill=\"\(Chart.axisColour)\""))
        let yLabelX = 12.0, yLabelY = top + plotHeight / 2
        parts.append("<text x=\"\(Chart.n(yLabelX))\" y=\"\(Chart.n(yLabelY))\" text-anchor=\"middle\" transform=\"rotate(-90 \(Chart.n(yLabelX)) \(Chart.n(yLabelY)))\" fill=\"\(Chart.axisColour)\">\(Markup.escape(yLabel))</text>")

        for rule in horizontalRules {
            let y = py(rule.value)
            parts.append("<line x1=\"\(Chart.n(left))\" x2=\"\(Chart.n(right))\" y1=\"\(Chart.n(y))\" y2=\"\(Chart.n(y))\" stroke=\"\(rule.colour)\" stroke-dasharray=\"5 4\">\(Chart.title(rule.label))</line>")
            parts.append(Chart.text(rule.label, x: right - 4, y: y - 4, anchor: "end", extra: "fill=\"\(rule.colour)\" font-size=\"11\" paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"3\""))
        }
        if let rule = verticalRule {
            let x = px(rule.value)
            parts.append("<line x1=\"\(Chart.n(x))\" x2=\"\(Chart.n(x))\" y1=\"\(Chart.n(top))\" y2=\"\(Chart.n(bottom))\" stroke=\"\(rule.colour)\" stroke-dasharray=\"3 3\">\(Chart.title(rule.label))</line>")
            let labelWidth = Markup.textWidth(rule.label, fontSize: 11)
            let anchor = x + labelWidth / 2 > right ? "end" : (x - labelWidth / 2 < left ? "start" : "middle")
            parts.append(Chart.text(rule.label, x: x, y: top - 7, anchor: anchor, extra: "fill=\"\(rule.colour)\" font-size=\"11\""))
        }
        for mark in axisMarks {
            let x = px(mark.x)
            parts.append("<path d=\"M\(Chart.n(x)) \(Chart.n(bottom - 1))l-3.5 7h7z\" fill=\"\(axisMarkColour)\">\(Chart.title(mark.title))</path>")
        }
        let longest = series.map(\.points.count).max() ?? 0
        let showMarkers = markers ?? (longest <= 60)
        for s in series {
            guard !s.points.isEmpty else { continue }
            let path = s.points.enumerated().map { i, p in "\(i == 0 ? "M" : "L")\(Chart.n(px(p.x))) \(Chart.n(py(p.y)))" }.joined()
            // Hundreds of points: thinner lines, so crossing series stay apart.
            let strokeWidth = s.points.count > 150 ? min(s.strokeWidth, 1.2) : s.points.count > 60 ? min(s.strokeWidth, 1.6) : s.strokeWidth
            parts.append("<path d=\"\(path)\" fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"\(Chart.n(strokeWidth))\" stroke-linejoin=\"round\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")\(s.key != nil ? " data-series=\"\(Markup.escape(s.key!))\" data-x=\"\(s.points.map { Markup.decimal($0.x, digits: 6) }.joined(separator: " "))\" data-values=\"\(s.points.map { Markup.decimal($0.y, digits: 6) }.joined(separator: " "))\"" : "")>\(Chart.title(s.name))</path>")
            if showMarkers || s.points.count == 1 {
                for p in s.points {
                    parts.append("<circle cx=\"\(Chart.n(px(p.x)))\" cy=\"\(Chart.n(py(p.y)))\" r=\"3\" fill=\"\(s.colour)\">\(Chart.title("\(s.name): \(Markup.tick(p.y)) at \(xLabel) \(Markup.tick(p.x))"))</circle>")
                }
            }
        }
        return Chart.svgOpen(width: width, height: height, label: label) + parts.joined() + "</svg>"
    }
}

/// Colours that stay apart for colour-blind readers (Okabe–Ito) and shades of one hue per
/// category, so a subgroup's colour says which category it belongs to.
enum Palette {
    static let distinct = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#444444"]
    static let hues = [212.0, 32, 150, 285, 0, 180, 55, 330]
    static let noBias = "#cfcfcf"
    static let baseline = "#555555"

    static func distinct(_ i: Int) -> String {
        if i < distinct.count { return distinct[i] }
        return hsl(Double((i * 47) % 360), 60, 45)
    }

    /// Shade `j` of `count` of category `g`: darker first, never so light it vanishes on white.
    static func subgroup(category g: Int, shade j: Int, of count: Int) -> String {
        // Lightness and a small hue turn both separate the shades of one category.
        let spread = count <= 1 ? 0 : (Double(j) - Double(count - 1) / 2) * 26 / Double(count - 1)
        let hue = (hues[g % hues.count] + Double(g / hues.count) * 17 + spread + 360).truncatingRemainder(dividingBy: 360)
        let lightness = count <= 1 ? 45 : 28 + 44 * Double(j) / Double(count - 1)
        return hsl(hue, g % hues.count == 6 ? 55 : 68, lightness)
    }

    static func hsl(_ h: Double, _ s: Double, _ l: Double) -> String {
        "hsl(\(Int(h.truncatingRemainder(dividingBy: 360))),\(Int(s))%,\(Int(l))%)"
    }
}
