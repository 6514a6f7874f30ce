"""What the run puts into its reports: service logs beside a failure, the readiness table.

Following pytest-html's advice, extras are added in a `pytest_runtest_makereport` hookwrapper
(setup phase included) as report sections, which both the terminal and pytest-html show; full
logs go into files under the log directory instead of being embedded. Every text passes
through the target's redactor first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pytest

from swarm_checks.errors import SwarmError
from swarm_checks.stash import USED_SERVICES
from swarm_checks.session import SwarmRun
from swarm_checks.targets.base import LOG_TAIL

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
    if not run.target_created or run.settings.target == "external":
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
        except (SwarmError, OSError):
            continue
        report.sections.append((f"swarm logs: {name} (last {LOG_TAIL} lines)", _truncate(text)))
    _point_to_files(report, run)


def _point_to_files(report: pytest.TestReport, run: SwarmRun) -> None:
    project = getattr(run.target(), "project", None)
    if project:
        report.sections.append(("swarm logs: full logs",
                                f"every service's full log is written to {run.context.log_dir / project} at teardown"))


def readiness_lines(readiness: dict[str, dict[str, Any]]) -> list[str]:
    """The readiness table: each service's time from `up` to ready and what its probe saw."""
    lines = []
    for name, record in sorted(readiness.items(), key=lambda kv: kv[1].get("seconds", 0)):
        lines.append(f"  {name:<18} ready after {record.get('seconds', 0):7.1f} s   {record.get('detail', '')}")
    return lines


def write_readiness(path: Path, project: str, readiness: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"project": project, "services": readiness}, indent=2, sort_keys=True))


def deployed_and_skipped(active: Iterable[str], everything: Iterable[str], reason_for) -> list[str]:
    """Which services ran live in this run, and for the others why not."""
    active_set = set(active)
    lines = [f"  live:    {', '.join(sorted(active_set)) or 'none'}"]
    for name in sorted(set(everything) - active_set):
        lines.append(f"  not deployed: {name}: {reason_for(name)}")
    return lines
