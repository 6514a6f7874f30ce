"""Small, dependency-free renderings of a load result: an HTML summary table and SVG line
charts (latency percentiles and throughput against concurrency) for the HTML report."""
from __future__ import annotations

import html
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
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "scheduling_lag_ms"):
        d = summary.get(name) or {}
        if not d.get("count"):
            continue
        values = "".join(f"<td>{d.get(k, 0):.2f}</td>" for k in ("mean", "median", "std", "p90", "p99"))
        dist_rows += f"<tr><td>{name}</td>{values}</tr>"
    return (f"<p><b>{html.escape(title)}</b></p><table border='1' cellpadding='3'>{cells}</table>"
            "<table border='1' cellpadding='3'><tr><th>ms</th><th>mean</th><th>median</th><th>std</th><th>p90</th>"
            f"<th>p99</th></tr>{dist_rows}</table>")


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, x_label: str, y_label: str,
               width: int = 420, height: int = 260) -> str:
    """An SVG line chart of named (x, y) series."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    left, right, top, bottom = 55, 110, 28, 40
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(ys) * 1.1 if max(ys) > 0 else 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - y / y1 * (height - top - bottom)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11'>",
             f"<text x='{width / 2}' y='16' text-anchor='middle' font-weight='bold'>{html.escape(title)}</text>",
             f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='black'/>",
             f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='black'/>",
             f"<text x='{(left + width - right) / 2}' y='{height - 8}' text-anchor='middle'>{html.escape(x_label)}</text>",
             f"<text x='12' y='{(top + height - bottom) / 2}' transform='rotate(-90 12 {(top + height - bottom) / 2})' "
             f"text-anchor='middle'>{html.escape(y_label)}</text>"]
    for tick in range(5):
        value = y1 * tick / 4
        parts.append(f"<text x='{left - 4}' y='{sy(value) + 4}' text-anchor='end'>{value:.3g}</text>")
    for x in sorted(set(xs)):
        parts.append(f"<text x='{sx(x)}' y='{height - bottom + 14}' text-anchor='middle'>{x:g}</text>")
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        ordered = sorted(values)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
        parts += [f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{colour}'/>" for x, y in ordered]
        parts.append(f"<text x='{width - right + 8}' y='{top + 14 * index + 10}' fill='{colour}'>{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def concurrency_charts(points: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """Latency percentiles and throughput against concurrency, for a sweep or several runs."""
    latency = {f"TTFT {q}": [(c, s["ttft_ms"].get(q, 0.0)) for c, s in points] for q in ("median", "p99")}
    latency |= {f"TPOT {q}": [(c, s["tpot_ms"].get(q, 0.0)) for c, s in points] for q in ("median", "p99")}
    throughput = {"output tok/s": [(c, s["output_throughput"]) for c, s in points]}
    return (line_chart(latency, "Latency percentiles", "concurrency", "ms")
            + line_chart(throughput, "Output throughput", "concurrency", "tokens/s"))


def percentile_chart(title: str, summary: dict[str, Any]) -> str:
    """Latency percentiles of one run (x: percentile, y: ms) for TTFT, TPOT, ITL and E2EL."""
    series = {}
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        d = summary.get(name) or {}
        points = [(float(k[1:]), v) for k, v in d.items() if k.startswith("p") and k[1:].isdigit()]
        if points:
            series[name.removesuffix("_ms").upper()] = points
    return line_chart(series, f"{title}: latency percentiles", "percentile", "ms")
