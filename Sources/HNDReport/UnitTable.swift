import Foundation
import HNDEngine
import HNDStore

/// The table of every unit: threshold, region, baseline label, pairings and biases.
extension Page {
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
            .map { "\(taxonomy.concepts[$0]) P \(Markup.fixed(Double(s.localProb[u * l + $0]))) · IoU \(Markup.fixed(Double(s.iou[u * l + $0])))"
                + significance(s, p: s.localP[u * l + $0], significant: s.localSignificant[u * l + $0]) }
        let biased = (0..<g).filter { s.globalBiased[u * g + $0] != 0 }
            .map { "\(taxonomy.subgroups[$0]) \(Markup.fixed(Double(s.globalProb[u * g + $0])))"
                + significance(s, p: s.globalP[u * g + $0], significant: s.globalSignificant[u * g + $0])
                + beyondUntrained(s, index: u * g + $0) }
        return UnitCells(threshold: Markup.significant(Double(s.threshold[u])), region: region, netdissect: netdissect,
                         paired: paired.joined(separator: "; "), biased: biased.joined(separator: ", "))
    }

    /// " · p 0.003", or " · p 0.2 (not significant)": the adjusted p of a pairing the paper's rule
    /// made; nothing when the snapshot skipped the tests.
    func significance(_ s: LayerSnapshot, p: Float, significant: UInt8) -> String {
        guard s.significanceTested else { return "" }
        return " · p \(Markup.significant(Double(p)))" + (significant != 0 ? "" : " (not significant)")
    }

    /// " · beyond untrained (change p 0.001)" when the pairing is biased beyond the untrained
    /// network; nothing when the snapshot has no change test or the pairing is not.
    func beyondUntrained(_ s: LayerSnapshot, index i: Int) -> String {
        guard s.changeTested, s.globalBeyondUntrained[i] != 0 else { return "" }
        return " · beyond untrained (change p \(Markup.significant(Double(s.globalChangeP[i]))))"
    }

    /// Every unit, 256 to a collapsible page so a 2,048-unit layer stays easy to scroll.
    func unitTable(_ s: LayerSnapshot) -> String {
        let pageSize = 256
        let head = "<table><thead><tr><th class=\"num\">unit</th><th class=\"num\">threshold T</th><th>region</th>"
            + "<th>Network Dissection (IoU)</th><th>paired with: P · IoU</th><th>biased toward: P</th></tr></thead><tbody>"
        var html = "<p class=\"note\">Threshold T: the unit’s activation quantile (Stage II). Paired: Stage III probability P and IoU; biased: Stage I probability P. "
            + (s.significanceTested ? "p: the pairing’s Benjamini–Hochberg adjusted p-value under the permutation null; “not significant” marks p > \(FalseDiscovery.rate) "
               + "(the paper’s rule holds, but chance explains it as well). " : "")
            + (s.changeTested ? "“Beyond untrained”: P rose since the run’s first complete pass (the untrained network) by more than chance "
               + "(adjusted change p ≤ \(FalseDiscovery.rate)). " : "")
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
}
