"""pytest entry point of swarm_checks: options, markers, hooks. Thin: it delegates."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Generator

import pytest

from swarm_checks import markers, options, report, targets
from swarm_checks.errors import SwarmError, fail
from swarm_checks.fixtures import swarm_catalog, swarm_endpoint, swarm_load, swarm_probes, swarm_settings, swarm_target
from swarm_checks.stash import LOAD_RECORDER, SUMMARY, SWARM_RUN, swarm_run
from swarm_checks.session import SwarmRun
from swarm_checks.shared_state import RunContext

__all__ = ["swarm_catalog", "swarm_endpoint", "swarm_load", "swarm_probes", "swarm_settings", "swarm_target"]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def _log_dir(config: pytest.Config, settings: options.SwarmSettings) -> Path:
    if settings.log_dir is not None:
        return settings.log_dir
    html = getattr(config.option, "htmlpath", None)
    if html:
        return (Path(html).parent if Path(html).is_absolute() else Path.cwd() / Path(html).parent) / "swarm-logs"
    return settings.rootdir / "reports" / "swarm-logs"


def _context(config: pytest.Config, settings: options.SwarmSettings) -> RunContext:
    """The run id comes from the xdist controller, so that all workers share one stack."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    log_dir = _log_dir(config, settings)
    if workerinput is not None and "swarm_run_id" in workerinput:
        return RunContext(workerinput["swarm_run_id"], int(workerinput["swarm_owner_pid"]), True, log_dir)
    return RunContext(uuid.uuid4().hex[:10], os.getpid(), workerinput is not None, log_dir)


class _XdistHooks:
    """Registered only when pytest-xdist is active: hands the run id to every worker."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        run = swarm_run(node.config)
        node.workerinput["swarm_run_id"] = run.context.run_id
        node.workerinput["swarm_owner_pid"] = str(run.context.owner_pid)


def pytest_configure(config: pytest.Config) -> None:
    for name, line in markers.MARKERS.items():
        config.addinivalue_line("markers", line)
    settings = options.resolve(config)
    options.validate_explicit_files(settings)
    run = SwarmRun(settings, _context(config, settings))
    config.stash[SWARM_RUN] = run
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "swarm_checks_xdist")
    if config.pluginmanager.hasplugin("html"):
        from swarm_checks.report_html import HtmlReportHooks

        config.pluginmanager.register(HtmlReportHooks(), "swarm_checks_html")
    if "target" in settings.explicit:
        targets.check_available(settings.target)
        if settings.target == "external":
            # Cheap and local: a bad endpoints file is reported once, before collection.
            try:
                run.target()
            except SwarmError as error:
                raise pytest.UsageError(str(error)) from None


def pytest_report_header(config: pytest.Config) -> str:
    settings = swarm_run(config).settings
    profiles = ",".join(settings.profiles) or "auto"
    services = ",".join(settings.services) or "all"
    return (f"swarm: target={settings.target} compose_file={settings.compose_file} profiles={profiles} "
            f"services={services}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Test ids carry the target, as in pytest-testinfra: test_x[compose], test_x[external]."""
    if "swarm_target" in metafunc.fixturenames:
        name = swarm_run(metafunc.config).target_name
        metafunc.parametrize("swarm_target", [name], ids=[name], indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not markers.uses_markers(item):
        return
    try:
        reason = markers.skip_reason(item, swarm_run(item.config))
    except (SwarmError, pytest.UsageError) as error:
        fail(str(error))
    if reason:
        pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.failed:
        report.attach_logs(item, rep, swarm_run(item.config))
    if rep.when == "call" and LOAD_RECORDER in item.stash:
        from swarm_checks.load_recording import attach

        attach(item, rep)
    return rep


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """The xdist controller runs no fixture, so it cannot know when a worker stands a stack up:
    it guards SIGTERM for the run's test loop (so a cancelled CI job still reaches the teardown
    below) and gives the default handler back at the end."""
    run = swarm_run(session.config)
    if not run.context.is_worker and session.config.pluginmanager.hasplugin("dsession"):
        run.guard_sigterm()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's one owner tears down what the run stood up and records what it was."""
    run = swarm_run(session.config)
    summary = run.finish()
    if summary is not None:
        session.config.stash[SUMMARY] = summary
        if summary.readiness:
            report.write_readiness(run.context.log_dir / "readiness.json", summary)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    summary = config.stash.get(SUMMARY, None)
    if summary is None:
        return
    terminalreporter.section("swarm: stack")
    for line in report.summary_lines(summary):
        terminalreporter.write_line(line)
