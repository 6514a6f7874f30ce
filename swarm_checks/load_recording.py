"""The `swarm_load` fixture: run loads from a test, keep their JSON beside the report, and put a
summary table and SVG charts into that test's pytest-html entry."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm_checks.stash import LOAD_RECORDER
from swarm_checks.load import charts, roofline, thresholds
from swarm_checks.load.metrics import Slo
from swarm_checks.load.metrics import summarize
from swarm_checks.load.runner import SCHEMA, LoadSpec, RunResult, environment, run_load
from swarm_checks.load.workload import Workload
from swarm_checks.endpoint import Endpoint



@dataclass
class LoadRecorder:
    """Runs loads against endpoints; every run is written to JSON and summarised in the report."""

    item: pytest.Item
    directory: Path
    has_gpu: bool
    runs: list[tuple[str, RunResult]] = field(default_factory=list)

    def hardware_class(self) -> str:
        import os

        if os.environ.get("SWARM_HARDWARE_CLASS"):
            return os.environ["SWARM_HARDWARE_CLASS"]
        return roofline.hardware_class(roofline.gpu_name()) if self.has_gpu else "cpu"

    def thresholds(self, model: str) -> dict[str, Any]:
        key = f"{self.hardware_class()}/{model}"
        found = thresholds.entry(key)
        if found is None:
            pytest.skip(f"no load thresholds for {key!r} in {thresholds.DEFAULT_FILE}: measure this deployment with "
                        f"`python -m swarm_checks.load calibrate --key {key} ...` (README, load suite)")
        return found

    def run(self, endpoint: Endpoint, workload: Workload, spec: LoadSpec, label: str, slo: Slo | None = None,
            with_server_metrics: bool = True) -> RunResult:
        metrics_url = endpoint.root_url + "/metrics" if with_server_metrics and endpoint.kind == "llm" else None
        result = run_load(endpoint.openai_base_url, endpoint.model or "", workload, spec, api_key=endpoint.api_key,
                          metrics_url=metrics_url, slo=slo)
        result.document["endpoint"]["service"] = endpoint.service
        self.runs.append((label, result))
        self._write(label, result.document)
        return result

    def record(self, label: str, records: list, load: dict[str, Any]) -> RunResult:
        """Summarise and keep records measured some other way (e.g. `alternate`) like a run."""
        ends = [r.end for r in records] or [0.0]
        starts = [r.start for r in records] or [0.0]
        summary = summarize(records, max(ends) - min(starts))
        document = {"schema": SCHEMA, "environment": environment(), "load": load, "summary": summary,
                    "server_metrics": {"available": False, "reason": "not scraped"}, "thresholds": None, "verdicts": []}
        result = RunResult(list(records), document)
        self.runs.append((label, result))
        self._write(label, document)
        return result

    def judge(self, result: RunResult, entry: dict[str, Any]) -> list[dict[str, Any]]:
        concurrency = result.document["load"]["concurrency"]
        found = thresholds.verdicts(result.summary, concurrency, entry)
        result.document["thresholds"], result.document["verdicts"] = entry, found
        label = next(name for name, run in self.runs if run is result)
        self._write(label, result.document)
        return found

    def _path(self, label: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.item.name}-{label}") + ".json")

    def _write(self, label: str, document: dict[str, Any]) -> Path:
        path = self._path(label)
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        return path

    def extras_html(self) -> str:
        parts = []
        for label, run in self.runs:
            parts.append(charts.summary_table(run.summary, label))
            parts.append(charts.percentile_chart(label, run.summary))
        # Rate and Poisson runs without a cap have no concurrency (None): no point on these charts.
        by_concurrency = sorted({run.document["load"]["concurrency"]: run.summary for _, run in self.runs
                                 if run.document["load"].get("concurrency") is not None}.items())
        if len(by_concurrency) > 1:
            parts.append(charts.concurrency_charts(by_concurrency))
        files = [self._path(label) for label, _ in self.runs]
        parts.append("<p>" + "<br>".join(f"<a href='file://{f}'>{f}</a>" for f in files) + "</p>")
        return "<div>" + "".join(parts) + "</div>"


def attach(item: pytest.Item, report: pytest.TestReport) -> None:
    """Put the recorder's tables and charts into the pytest-html entry of the test (call phase)."""
    recorder = item.stash.get(LOAD_RECORDER, None)
    if not isinstance(recorder, LoadRecorder) or not recorder.runs or report.when != "call":
        return
    try:
        from pytest_html import extras
    except ImportError:
        return
    report.extras = [*getattr(report, "extras", []), extras.html(recorder.extras_html())]  # type: ignore[attr-defined]
    for label, run in recorder.runs:
        s = run.summary
        report.sections.append((f"load: {label}", f"{s['completed']} completed, {s['failed']} failed; output "
                                f"{s['output_throughput']:.1f} tok/s; TTFT median {s['ttft_ms'].get('median', 0):.1f} ms, "
                                f"ITL median {s['itl_ms'].get('median', 0):.2f} ms"))

