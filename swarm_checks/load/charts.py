"""Small, dependency-free renderings of a load result: an HTML summary table and SVG line
charts (latency percentiles and throughput against concurrency) for the HTML report."""
from __future__ import annotations

import html
import math
from typing import Any, Sequence

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def summary_table(summary: dict[str, Any], title: str = "") -> str:
    rows = [
        ("completed / failed / incomplete", f"{summary['completed']} / {summary['failed']} / {summary['incomplete']}"),
        ("error kinds", ", ".join(f"{k}: {v}" for k, v in summary["error_kinds"].items()) or "none"),
        ("request throughput (req/s)", f"{summary['request_throughput']:.2f}"),
        ("output throughput (tok/s)", f"{summary['output_throughput']:.1f}"),
        ("total token throughput (tok/s)", f"{summary['total_token_throughput']:.1f}"),
        ("goodput (req/s)", "-" if summary.get("goodput") is None else f"{summary['goodput']:.2f}"),
        ("tokens per chunk", "-" if summary.get("tokens_per_chunk") is None else f"{summary['tokens_per_chunk']:.2f}"),
    ]
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    dist_rows = ""
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "scheduling_lag_ms", "excess_lag_ms", "client_loop_lag_ms"):
        d = summary.get(name) or {}
        if not d.get("count"):
            continue
        values = "".join(f"<td>{d.get(k, 0):.2f}</td>" for k in ("mean", "median", "std", "p90", "p99"))
        dist_rows += f"<tr><td>{name}</td>{values}</tr>"
    return (f"<p><b>{html.escape(title)}</b></p><table border='1' cellpadding='3'>{cells}</table>"
            "<table border='1' cellpadding='3'><tr><th>ms</th><th>mean</th><th>median</th><th>std</th><th>p90</th>"
            f"<th>p99</th></tr>{dist_rows}</table>")


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def human(value: float) -> str:
    """A tick label people read at a glance: 0.25, 40, 1,890, 12.5 k, 3 M (never 1.89e+03)."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g} M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g} k"
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, x_label: str, y_label: str,
               width: int = 440, height: int = 280) -> str:
    """An SVG line chart of named (x, y) series: round ticks with human labels, the unit on the
    axis, and the legend below the plot where it covers no data."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    rows = math.ceil(len(series) / 2)
    left, right, top, bottom = 60, 16, 28, 46 + 14 * rows
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    ticks = nice_ticks(max(ys) * 1.05)
    y1 = ticks[-1]
    plot_bottom = height - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return plot_bottom - y / y1 * (plot_bottom - top)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11' "
             f"font-family='sans-serif' role='img' aria-label='{html.escape(title)}'>",
             f"<text x='{width / 2}' y='16' text-anchor='middle' font-weight='bold'>{html.escape(title)}</text>",
             f"<line x1='{left}' y1='{plot_bottom}' x2='{width - right}' y2='{plot_bottom}' stroke='black'/>",
             f"<line x1='{left}' y1='{top}' x2='{left}' y2='{plot_bottom}' stroke='black'/>",
             f"<text x='{(left + width - right) / 2}' y='{plot_bottom + 30}' text-anchor='middle'>{html.escape(x_label)}</text>",
             f"<text x='14' y='{(top + plot_bottom) / 2}' transform='rotate(-90 14 {(top + plot_bottom) / 2})' "
             f"text-anchor='middle'>{html.escape(y_label)}</text>"]
    for value in ticks:
        parts.append(f"<line x1='{left}' y1='{sy(value):.1f}' x2='{width - right}' y2='{sy(value):.1f}' stroke='#e5e5e5'/>")
        parts.append(f"<text class='tick' x='{left - 4}' y='{sy(value) + 4:.1f}' text-anchor='end'>{human(value)}</text>")
    for x in sorted(set(xs)):
        parts.append(f"<text class='tick' x='{sx(x):.1f}' y='{plot_bottom + 14}' text-anchor='middle'>{human(x)}</text>")
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        ordered = sorted(values)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
        parts += [f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{colour}'/>" for x, y in ordered]
        lx, ly = left + (index % 2) * (width - left - right) / 2, plot_bottom + 46 + 14 * (index // 2)
        parts.append(f"<rect x='{lx:.1f}' y='{ly - 8}' width='10' height='3' fill='{colour}'/>"
                     f"<text class='legend' x='{lx + 14:.1f}' y='{ly - 4}'>{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def concurrency_charts(points: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """Against concurrency, three panels on scales that fit them: the request-level latencies
    (TTFT, E2EL), the per-token ones (TPOT, ITL), and the output throughput."""
    def series(metric: str, label: str) -> dict[str, list[tuple[float, float]]]:
        return {f"{label} {q}": [(c, (s.get(metric) or {}).get(q, 0.0)) for c, s in points] for q in ("median", "p99")}

    throughput = {"output tokens/s": [(c, s["output_throughput"]) for c, s in points]}
    return (line_chart(series("ttft_ms", "TTFT") | series("e2el_ms", "E2EL"), "Time to first token, end-to-end",
                       "concurrency (requests in flight)", "latency (ms)")
            + line_chart(series("tpot_ms", "TPOT") | series("itl_ms", "ITL"), "Time per output token, inter-token",
                         "concurrency (requests in flight)", "latency (ms)")
            + line_chart(throughput, "Output throughput", "concurrency (requests in flight)", "tokens/s"))


def percentile_chart(title: str, summary: dict[str, Any]) -> str:
    """Latency percentiles of one run (x: percentile, y: ms): TTFT and E2EL in one panel, TPOT
    and ITL (tens of ms where the others are seconds) in another."""
    def series(names: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
        found = {}
        for name in names:
            d = summary.get(name) or {}
            points = [(float(k[1:]), v) for k, v in d.items() if k.startswith("p") and k[1:].isdigit()]
            if points:
                found[name.removesuffix("_ms").upper()] = points
        return found

    return (line_chart(series(("ttft_ms", "e2el_ms")), f"{title}: TTFT, E2EL", "percentile", "latency (ms)")
            + line_chart(series(("tpot_ms", "itl_ms")), f"{title}: TPOT, ITL", "percentile", "latency (ms)"))
