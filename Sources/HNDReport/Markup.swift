import Foundation

/// Text helpers for HTML and SVG: escaping, number formats and an estimate of text width (there
/// are no font metrics here, and labels must not overlap).
enum Markup {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// An id usable in HTML anchors, derived from any layer name.
    static func anchor(_ text: String) -> String {
        "layer-" + text.unicodeScalars.map { scalar in
            CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII ? String(scalar) : "-\(scalar.value)-"
        }.joined()
    }

    /// Width in pixels of `text` at `fontSize`, generous so that labels never collide: the mean
    /// advance of a sans-serif face is about 0.55 em; wide letters and digits count more.
    static func textWidth(_ text: String, fontSize: Double, bold: Bool = false) -> Double {
        var ems = 0.0
        for character in text {
            switch character {
            case "i", "l", "j", "t", "f", "r", "I", ".", ",", ":", ";", "'", "|", "!", " ": ems += 0.32
            case "m", "w", "M", "W": ems += 0.9
            case "A"..."Z": ems += 0.68
            case "0"..."9": ems += 0.58
            default: ems += 0.56
            }
        }
        return ems * fontSize * (bold ? 1.08 : 1)
    }

    /// A number with at most `digits` decimals and no trailing zeros: 0.5, 12, 0.062.
    static func decimal(_ value: Double, digits: Int = 3) -> String {
        guard value.isFinite else { return "—" }
        var text = String(format: "%.\(digits)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text == "-0" ? "0" : text
    }

    /// Fixed decimals, for columns of probabilities: 0.610.
    static func fixed(_ value: Double, digits: Int = 3) -> String {
        value.isFinite ? String(format: "%.\(digits)f", value) : "—"
    }

    /// Four significant digits, trailing zeros kept so a column reads evenly: 1.100, 0.04210, 1234.
    static func significant(_ value: Double, digits: Int = 4) -> String {
        guard value.isFinite else { return "—" }
        guard value != 0 else { return "0" }
        let decimals = max(0, min(8, digits - 1 - Int(floor(log10(abs(value))))))
        return String(format: "%.\(decimals)f", value)
    }

    /// An integer with thousands separators: 2,048.
    static func integer<T: BinaryInteger>(_ value: T) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, digit) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return (value < 0 ? "−" : "") + out
    }

    /// Axis tick labels: integers in full up to 99,999, then 120k, 1.5M.
    static func tick(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1e6 { return decimal(value / 1e6, digits: 2) + "M" }
        if magnitude >= 1e5 { return decimal(value / 1e3, digits: 1) + "k" }
        if value == value.rounded() { return integer(Int64(value)) }
        return decimal(value, digits: 3)
    }

    static func percent(_ part: Int, of whole: Int) -> String {
        whole > 0 ? decimal(100 * Double(part) / Double(whole), digits: 1) + " %" : "—"
    }

    /// UTC date and time of a Unix time.
    static func utc(_ time: Double) -> String {
        guard time.isFinite, time > 0 else { return "—" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: Date(timeIntervalSince1970: time))
    }

    /// Shortens a label to fit `width` pixels, ending in an ellipsis.
    static func fit(_ text: String, width: Double, fontSize: Double) -> String {
        if textWidth(text, fontSize: fontSize) <= width { return text }
        var shortened = text
        while !shortened.isEmpty, textWidth(shortened + "…", fontSize: fontSize) > width { shortened.removeLast() }
        return shortened + "…"
    }
}

/// Round tick positions (1, 2 or 5 × 10ⁿ apart) covering a range.
enum Ticks {
    static func nice(_ lo: Double, _ hi: Double, maxCount: Int, integers: Bool = false) -> [Double] {
        guard hi > lo, maxCount >= 2 else { return [lo] }
        let rough = (hi - lo) / Double(maxCount - 1)
        let power = pow(10, floor(log10(rough)))
        var step = [1.0, 2, 2.5, 5, 10].map { $0 * power }.first { $0 >= rough } ?? 10 * power
        if integers { step = max(1, step.rounded(.up)) }
        let first = (lo / step).rounded(.up) * step
        var ticks: [Double] = []
        var value = first
        while value <= hi + step * 1e-9 {
            ticks.append(abs(value) < step * 1e-9 ? 0 : value)
            value = first + Double(ticks.count) * step
        }
        return ticks
    }

    /// The most ticks whose labels fit along `length` pixels without touching.
    static func fitting(_ lo: Double, _ hi: Double, length: Double, integers: Bool, fontSize: Double,
                        label: (Double) -> String) -> [Double] {
        var count = max(2, Int(length / 40))
        while count > 2 {
            let ticks = nice(lo, hi, maxCount: count, integers: integers)
            let widest = ticks.map { Markup.textWidth(label($0), fontSize: fontSize) }.max() ?? 0
            if Double(ticks.count) * (widest + 14) <= length { return ticks }
            count -= 1
        }
        return nice(lo, hi, maxCount: 2, integers: integers)
    }
}
