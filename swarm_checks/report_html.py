"""The top of the HTML report: what was tested, before any test result.

pytest-html's page opens with an environment table of Python and plugin versions; the reader
of a deployment's report wants the deployment: the target and its project or namespace, which
services ran live and which were skipped and why, the image and version each one ran, the GPU
and driver where there is one, and the commit of the assets. This module puts that in the
summary section (a table per service) and first in the environment table. It is registered
only where pytest-html is installed, and reads only the target-neutral `StackSummary`.
"""
from __future__ import annotations

import html
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pytest

from swarm_checks.catalog import Catalog
from swarm_checks.stash import SUMMARY, swarm_run
from swarm_checks.targets.base import StackSummary

STYLE = ("<style>table.swarm-stack{border-collapse:collapse;margin:6px 0 12px}"
         "table.swarm-stack td,table.swarm-stack th{border:1px solid #ccc;padding:3px 8px;text-align:left;"
         "vertical-align:top}table.swarm-stack th{background:#f2f2f2}.swarm-live{color:#116611}"
         ".swarm-skipped{color:#8a6d00}</style>")


def assets_revision(path: Path) -> str:
    """The git commit of the assets (with `+ local changes` when the tree differs), or why not."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=False)
        if commit.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "git not available"
    return commit.stdout.strip() + (" + local changes" if dirty else "")


def service_rows(summary: StackSummary, catalog: Catalog | None) -> list[dict[str, str]]:
    """One row per service the assets define: live (and how fast, what its probe saw, its image)
    or not deployed (and how to deploy it)."""
    names = sorted(set(catalog.services) if catalog else set()) or sorted(summary.readiness)
    rows = []
    for name in names:
        ready = summary.readiness.get(name)
        active = catalog is None or name in catalog.active
        if ready is not None:
            status = f"live, ready after {float(ready.get('seconds', 0) or 0):.1f} s"
        elif active:
            status = "deployed, not ready" if summary.status == "failed" else "deployed"
        else:
            status = f"not deployed: {catalog.how_to_enable(name)}" if catalog else "not deployed"
        rows.append({"service": name, "kind": catalog.services[name].kind if catalog and name in catalog.services else "",
                     "status": status, "seen": str((ready or {}).get("detail", "")),
                     "image": summary.images.get(name, ""), "live": "yes" if ready is not None else ""})
    return rows


def summary_html(summary: StackSummary, catalog: Catalog | None, assets: str) -> str:
    head = (f"<h2>Stack under test</h2><p><b>target</b> {html.escape(summary.target)} &nbsp; "
            f"<b>{html.escape(summary.what)}</b> {html.escape(summary.name)} &nbsp; <b>status</b> "
            f"{html.escape(summary.status)} &nbsp; <b>assets</b> {html.escape(assets)}"
            + "".join(f" &nbsp; <b>{html.escape(k)}</b> {html.escape(v)}" for k, v in summary.facts.items()) + "</p>")
    if summary.error:
        head += f"<p><b>setup failed:</b> {html.escape(summary.error)}</p>"
    cells = "".join(
        f"<tr class='{'swarm-live' if row['live'] else 'swarm-skipped'}'><td>{html.escape(row['service'])}</td>"
        f"<td>{html.escape(row['kind'])}</td><td>{html.escape(row['status'])}</td><td>{html.escape(row['seen'])}</td>"
        f"<td>{html.escape(row['image'])}</td></tr>" for row in service_rows(summary, catalog))
    table = ("<table class='swarm-stack' id='swarm-stack'><tr><th>service</th><th>kind</th><th>status</th>"
             f"<th>what its probe saw</th><th>image</th></tr>{cells}</table>")
    return STYLE + head + table


def environment(summary: StackSummary, assets: str) -> dict[str, str]:
    """The stack's facts for the top of pytest-html's environment table."""
    facts = {"Stack target": summary.target, f"Stack {summary.what}": summary.name, "Stack status": summary.status,
             "Assets commit": assets}
    engine = next((str(r.get("detail", "")) for name, r in summary.readiness.items() if "vLLM" in str(r.get("detail", ""))), "")
    if engine:
        facts["LLM engine"] = engine
    return {**facts, **summary.facts}


class HtmlReportHooks:
    """Registered only when pytest-html is loaded (its hooks do not exist otherwise)."""

    @pytest.hookimpl
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        stack: StackSummary | None = session.config.stash.get(SUMMARY, None)
        if stack is None:
            return
        run = swarm_run(session.config)
        catalog = _catalog(run)
        assets = assets_revision(run.settings.compose_file.parent)
        prefix.append(summary_html(stack, catalog, assets))
        _put_first_in_environment(session.config, environment(stack, assets))


def _catalog(run: Any) -> Catalog | None:
    try:
        return run.catalog()
    except Exception:  # noqa: BLE001 - the report must be written whatever the assets' state
        return None


def _put_first_in_environment(config: pytest.Config, facts: Mapping[str, str]) -> None:
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return
    metadata = config.stash.get(metadata_key, None)
    if metadata is None:
        return
    rest = {k: v for k, v in metadata.items() if k not in facts}
    metadata.clear()
    metadata.update({**facts, **rest})
