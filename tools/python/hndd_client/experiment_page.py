"""`experiment.html` (inline SVG, Figs. 11–13 like the paper's) and `results.md` (the tables).

Values are ranges over seeds (min–max, median), never one run's: see experiment_results.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from . import experiment_svg as svg
from .experiment_plan import Run, Setting
from .experiment_results import METRICS, Measured, curve_band, direction, series, units_of

FIGURES = {
    "eyeglasses": ("Fig. 11-like — §5.1 eyeglasses bias: eye-region and eyeglasses-paired units against P",
                   ("eye_region", "paired", "paired_significant")),
    "grayscale": ("Fig. 12-like — §5.2 grayscale bias: grayscale-biased units against P",
                  ("biased", "biased_significant", "beyond_untrained")),
}
#: The metric whose P = 50 → 100 rise is the paper's direction, per experiment.
DIRECTION_METRIC = {"eyeglasses": "paired_significant", "grayscale": "biased_significant"}
PAPER_METRIC = {"eyeglasses": "paired", "grayscale": "biased"}


@dataclass
class Context:
    """What the page states besides the values: the setting, the machine and the time taken."""

    setting: Setting
    cpu: str
    seconds: float
    runs_done: int
    runs_planned: int
    experiments: Sequence[str]
    percents: Sequence[int]
    seeds: int
    run_seconds: Dict[str, float]
    load_average: str = ""


def _metrics_present(entries, experiment, metrics) -> List[str]:
    return [m for m in metrics if any(e.metrics.get(m) is not None for e in entries if e.run.experiment == experiment)]


def count_chart(entries: Sequence[Measured], experiment: str, layer: str, step: int, metrics: Sequence[str]) -> str:
    lines = []
    for k, metric in enumerate(metrics):
        ranges = series(entries, experiment, layer, metric, step)
        if not ranges:
            continue
        x = sorted(ranges)
        lines.append(svg.Line(METRICS[metric][0].split(" (")[0], x, [ranges[p].median for p in x],
                              [ranges[p].low for p in x], [ranges[p].high for p in x], svg.colour(k)))
    reference = series(entries, experiment, layer, metrics[-1] if metrics[-1] != "beyond_untrained" else metrics[1], 0)
    if reference and step != 0:
        x = sorted(reference)
        lines.append(svg.Line("the same at step 0 (untrained)", x, [reference[p].median for p in x],
                              colour="#777777", dashed=True, markers=False))
    return svg.render(svg.Chart(layer, "bias P (%)", "units", lines, y_max=None))


def curve_chart(curves: Dict[Run, np.ndarray], experiment: str, layer: str, percents: Sequence[int]) -> str:
    lines = []
    for k, percent in enumerate(percents):
        chosen = [c for run, c in curves.items() if run.experiment == experiment and run.percent == percent]
        if not chosen or len({len(c) for c in chosen}) != 1:
            continue
        low, median, high = curve_band(chosen)
        x = list(range(1, len(median) + 1))
        lines.append(svg.Line(f"P = {percent}", x, list(median), list(low), list(high), svg.ramp(k, len(percents)),
                              markers=False))
    label = "P(grayscale), Stage I" if experiment == "grayscale" else "P(eyeglasses), Stage III"
    return svg.render(svg.Chart(layer, "units, sorted", label, lines, y_max=1.0))


def table_lines(entries: Sequence[Measured], experiment: str, layers: Sequence[str], step: int,
                metrics: Sequence[str]) -> List[str]:
    """Markdown: per layer and P, each metric as min–max over seeds (median)."""
    header = ["layer", "P"] + [METRICS[m][0] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for layer in layers:
        percents = sorted({p for m in metrics for p in series(entries, experiment, layer, m, step)})
        for percent in percents:
            cells = []
            for metric in metrics:
                r = series(entries, experiment, layer, metric, step).get(percent)
                cells.append(f"{r.text()} ({r.median:g})" if r else "–")
            lines.append(f"| {layer} ({units_of(entries, layer)} units) | {percent} | " + " | ".join(cells) + " |")
    return lines


def compact_lines(entries: Sequence[Measured], experiment: str, layers: Sequence[str], step: int,
                  low: int, high: int) -> List[str]:
    """Markdown: per layer, the paper's count · the significant count (min–max over seeds) at the
    ends of the range, after training and untrained; for eyeglasses also the eye-region units."""
    paper, significant = PAPER_METRIC[experiment], DIRECTION_METRIC[experiment]

    def cell(layer, metric_pair, percent, at):
        parts = [series(entries, experiment, layer, m, at).get(percent) for m in metric_pair]
        return " · ".join(r.text() if r else "–" for r in parts)

    columns = [(f"P = {low}", (paper, significant), low, step), (f"P = {high}", (paper, significant), high, step),
               ("step 0 (untrained)", (paper, significant), high, 0)]
    if experiment == "eyeglasses":
        columns += [(f"eye region P = {low}", ("eye_region",), low, step),
                    (f"eye region P = {high}", ("eye_region",), high, step)]
    lines = ["| layer | " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for layer in layers:
        lines.append(f"| {layer} | " + " | ".join(cell(layer, pair, percent, at) for _, pair, percent, at in columns)
                     + " |")
    return lines


def direction_lines(entries, experiment: str, layers: Sequence[str], step: int, percents: Sequence[int]) -> List[str]:
    low, high = min(percents), max(percents)
    out = []
    for metric in (PAPER_METRIC[experiment], DIRECTION_METRIC[experiment]):
        cells = []
        for layer in layers:
            holds, seeds = direction(entries, experiment, layer, metric, step, low, high)
            cells.append(f"{layer} {holds}/{seeds}")
        out.append(f"- {METRICS[metric][0]}: more at P = {high} than at P = {low} (same seed index) in "
                   + ", ".join(cells) + " seeds.")
    return out


def summary_lines(context: Context) -> List[str]:
    s = context.setting
    minutes = context.seconds / 60
    per_run = list(context.run_seconds.values())
    return [
        f"- Setting: {s.dictionary_images} dictionary images ({s.size} px, seed {s.dictionary_seed}, "
        f"{s.grayscale_fraction:g} grayscale), {s.train_images} training images per set, ResNet-18, {s.steps} steps "
        f"of batch {s.batch}, probe passes every {s.every} steps (step 0 = the untrained network), layers "
        f"{', '.join(s.layers)}.",
        f"- Runs: {context.runs_done} of {context.runs_planned} ({', '.join(context.experiments)} × P = "
        f"{', '.join(map(str, context.percents))} × {context.seeds} seeds; per seed the training set's and the "
        f"training seed change, the dictionary stays).",
        f"- CPU: {context.cpu}. Took {context.seconds:.0f} s ({minutes:.1f} min) wall-clock in total"
        + (f"; a training run {min(per_run):.0f}–{max(per_run):.0f} s (median {np.median(per_run):.0f} s), two side by "
           f"side, one torch thread each" if per_run else "")
        + (f"; load average at the end {context.load_average}" if context.load_average else "") + ".",
    ]


def markdown(entries: Sequence[Measured], context: Context) -> str:
    s = context.setting
    lines = ["# tools/experiment: the paper's §5.1 and §5.2 at full range", ""] + summary_lines(context) + [""]
    for experiment in context.experiments:
        metrics = _metrics_present(entries, experiment, FIGURES[experiment][1])
        for step, what in ((s.steps, f"after training (step {s.steps})"), (0, "untrained (step 0)")):
            lines += [f"## {experiment}, {what}: min–max over seeds (median)", ""]
            lines += table_lines(entries, experiment, s.layers, step, metrics) + [""]
        lines += [f"## {experiment}: {METRICS[PAPER_METRIC[experiment]][0]} · {METRICS[DIRECTION_METRIC[experiment]][0]}, "
                  f"min–max over seeds, step {s.steps}", ""]
        lines += compact_lines(entries, experiment, s.layers, s.steps, min(context.percents),
                               max(context.percents)) + [""]
        lines += [f"Direction at step {s.steps}:", ""] + direction_lines(entries, experiment, s.layers, s.steps,
                                                                           context.percents) + [""]
    return "\n".join(lines) + "\n"


def markdown_html(text: str) -> str:
    """The few Markdown forms `markdown` writes (headings, bullets, tables, lines) as HTML."""
    out: List[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not out or not out[-1].startswith("<tr") else "td"
            if tag == "th":
                out.append("<table>")
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if out and out[-1].startswith("<tr"):
            out.append("</table>")
        if line.startswith("## "):
            out.append(f"<h3>{html.escape(line[3:])}</h3>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if out and out[-1].startswith("<tr"):
        out.append("</table>")
    return "\n".join(out)


def page(entries: Sequence[Measured], curves: Dict[str, Dict[Run, np.ndarray]], context: Context) -> str:
    """The whole page; `curves` is layer -> run -> sorted probabilities (experiment_results.sorted_curves)."""
    s = context.setting
    body = [f"<h1>tools/experiment: the paper's §5.1 and §5.2, P = {min(context.percents)}–{max(context.percents)}, "
            f"{context.seeds} seed{'s' if context.seeds > 1 else ''}</h1>", "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>"
                                                           for line in summary_lines(context)) + "</ul>",
            "<p>Lines: the median over seeds; bands: min–max over seeds. Counts are hndd's own "
            "(<code>hndd summary --json</code>); significant = Benjamini–Hochberg q = 0.05 under the permutation null "
            f"(docs/3-numbers.md, Significance). At step {s.steps} unless marked.</p>"]
    for experiment in context.experiments:
        title, metrics = FIGURES[experiment]
        metrics = _metrics_present(entries, experiment, metrics)
        body.append(f"<h2>{html.escape(title)}</h2><div class='row'>")
        body += [count_chart(entries, experiment, layer, s.steps, metrics) for layer in s.layers]
        body.append("</div><ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in
                                          direction_lines(entries, experiment, s.layers, s.steps, context.percents))
                    + "</ul>")
    body.append("<h2>Fig. 13-like — sorted probability curves per P (median over seeds, band min–max)</h2>")
    for experiment in context.experiments:
        body.append(f"<h3>{experiment}</h3><div class='row'>")
        body += [curve_chart(curves.get(layer, {}), experiment, layer, context.percents) for layer in s.layers]
        body.append("</div>")
    tables = markdown(entries, context)
    tables = tables[tables.find("\n## ") + 1:]  # the summary above is already on the page
    body.append("<h2>Tables</h2>" + markdown_html(tables))
    style = ("body{font-family:sans-serif;max-width:1150px;margin:1em auto;padding:0 1em}"
             ".row{display:flex;flex-wrap:wrap;gap:8px}table{border-collapse:collapse;font-size:12px;margin:4px 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>hndd experiment</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")

