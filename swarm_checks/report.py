"""What the run puts into its reports: service logs beside a failure, the readiness table.

Following pytest-html's advice, extras are added in a `pytest_runtest_makereport` hookwrapper
(setup phase included) as report sections, which both the terminal and pytest-html show; full
logs go into files under the log directory instead of being embedded. Every text passes
through the target's redactor first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pytest

from swarm_checks.errors import SwarmError, TargetCapabilityError
from swarm_checks.stash import USED_SERVICES
from swarm_checks.session import SwarmRun
from swarm_checks.targets.base import LOG_TAIL, StackSummary

MAX_SECTION_CHARS = 6000


def _truncate(text: str) -> str:
    if len(text) <= MAX_SECTION_CHARS:
        return text
    return "[... truncated ...]\n" + text[-MAX_SECTION_CHARS:]


def services_concerned(item: pytest.Item) -> list[str]:
    """Services the test used through swarm_endpoint or named in requires_service markers."""
    names = set(item.stash.get(USED_SERVICES, set()))
    for marker in item.iter_markers("requires_service"):
        names.update(str(arg) for arg in marker.args)
    return sorted(names)


def attach_logs(item: pytest.Item, report: pytest.TestReport, run: SwarmRun) -> None:
    """Add the last log lines of the services concerned to a failed report."""
    if not run.target_created:
        return
    target = run.target()
    error = run.setup_error
    if error is not None and report.when == "setup":
        if run.setup_logs_reported:
            return
        run.setup_logs_reported = True
        tails: dict[str, str] = dict(getattr(error, "logs", {}) or {})
        for name, text in tails.items():
            report.sections.append((f"swarm logs: {name} (last {LOG_TAIL} lines)", _truncate(text)))
        _point_to_files(report, run)
        return
    for name in services_concerned(item):
        if name not in target.catalog().active:
            continue
        try:
            text = target.logs(name, tail=LOG_TAIL)
        except TargetCapabilityError:
            return  # this target reads no logs (external): nothing to attach, no pointer either
        except (SwarmError, OSError):
            continue
        report.sections.append((f"swarm logs: {name} (last {LOG_TAIL} lines)", _truncate(text)))
    _point_to_files(report, run)


def _point_to_files(report: pytest.TestReport, run: SwarmRun) -> None:
    summary = run.target().summary()
    if summary is not None and summary.logs_at is not None:
        report.sections.append(("swarm logs: full logs",
                                f"every service's full log is written to {summary.logs_at} at teardown"))


def readiness_lines(readiness: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The readiness table: each service's time from `up` to ready and what its probe saw."""
    lines = []
    for name, record in sorted(readiness.items(), key=lambda kv: float(kv[1].get("seconds", 0) or 0)):
        lines.append(f"  {name:<18} ready after {float(record.get('seconds', 0) or 0):7.1f} s   {record.get('detail', '')}")
    return lines


def summary_lines(summary: StackSummary) -> list[str]:
    """The terminal's "swarm: stack" section, for any target."""
    lines = [f"{summary.target}: {summary.what} {summary.name}: {summary.status}"]
    readiness = readiness_lines(summary.readiness)
    if readiness:
        lines += ["time to ready, per service:", *readiness]
    if summary.error:
        lines.append(f"setup failed: {summary.error}")
    if summary.logs_at is not None:
        lines.append(f"service logs: {summary.logs_at}")
    return lines + list(summary.notes)


def write_readiness(path: Path, summary: StackSummary) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"target": summary.target, "project": summary.name, "services": dict(summary.readiness)}
    path.write_text(json.dumps(record, indent=2, sort_keys=True))
