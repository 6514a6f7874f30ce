"""The HTML report as a person opens it: the stack under test at the top (target, project,
per-service live or skipped with the reason, image, what each probe saw, the assets' commit),
and load charts with readable axes. Checked in the HTML, then rendered by headless Chromium."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from swarm_checks.load import charts
from tests.test_compose_target import BASE_ARGS, DOCKER_MISSING

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Synthetic load figures (a test double for a load run's summary): shaped like the engine's
# summaries, with TTFT/E2EL in seconds and TPOT/ITL in tens of ms, as on a real CPU engine.
FAKE_POINTS = [(c, {"output_throughput": 25.0 * c ** 0.8,
                    "ttft_ms": {"median": 240.0 * c, "p99": 1890.0 * c}, "e2el_ms": {"median": 2600.0 * c, "p99": 5200.0 * c},
                    "tpot_ms": {"median": 40.0 + c, "p99": 55.0 + c}, "itl_ms": {"median": 39.0 + c, "p99": 80.0 + c}})
               for c in (1, 2, 4)]

INNER = f"""
from pytest_html import extras
from swarm_checks.load import charts

POINTS = {FAKE_POINTS!r}

def test_with_charts(swarm_endpoint, extra):
    swarm_endpoint("redis")
    extra.append(extras.html("<div id='load-charts'>" + charts.concurrency_charts(POINTS) + "</div>"))
"""


def test_tick_labels_are_human_and_latencies_get_their_own_panels() -> None:
    svg = charts.concurrency_charts(FAKE_POINTS)
    ticks = re.findall(r"class='tick'[^>]*>([^<]+)<", svg)
    assert ticks and not [t for t in ticks if "e+" in t or "e-" in t], ticks
    assert "8,000" in ticks or "8 k" in ticks or "10 k" in ticks, ticks  # the E2EL panel's top, in plain numbers
    titles = re.findall(r"font-weight='bold'>([^<]+)<", svg)
    assert titles == ["Time to first token, end-to-end", "Time per output token, inter-token", "Output throughput"]
    per_token = svg.split("<svg")[2]
    assert "TPOT median" in per_token and "TTFT" not in per_token, "per-token latencies share a panel with seconds-long ones"
    assert "latency (ms)" in svg and "tokens/s" in svg
    assert [charts.human(v) for v in (0.25, 40, 1890, 12500, 3e6)] == ["0.25", "40", "1,890", "12.5 k", "3 M"]


@pytest.mark.xdist_group("docker")
@pytest.mark.skipif(DOCKER_MISSING is not None, reason=f"report test: {DOCKER_MISSING}")
def test_the_report_opens_with_the_stack_and_renders_in_chromium(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_inner=INNER)
    report = pytester.path / "report.html"
    result = pytester.runpytest_subprocess(*BASE_ARGS, f"--html={report}", "--self-contained-html", timeout=300)
    result.assert_outcomes(passed=1)
    page = report.read_text()

    top = page[page.index("Stack under test"):page.index("</table>", page.index("id='swarm-stack'"))]
    assert re.search(r"<b>target</b> compose", top) and re.search(r"<b>project</b> swarm-[0-9a-f]+", top)
    assert re.search(r"<b>assets</b> [0-9a-f]{12}", top), "the assets' commit is missing"
    rows = dict(re.findall(r"<tr class='[^']+'><td>([^<]+)</td>(.*?)</tr>", top))
    assert "live, ready after" in rows["redis"] and "PONG (Redis 7." in rows["redis"]
    assert "vllm-swarm/redis:7.0-bookworm (" in rows["redis"], "the image and its id are missing"
    assert "live, ready after" in rows["app"]
    assert "mini-redis-password-not-for-production" not in page, "a secret reached the report"
    blob = re.search(r'data-jsonblob="([^"]+)"', page)
    assert blob, "pytest-html's data blob is missing"
    data = json.loads(html.unescape(blob.group(1)))
    assert list(data["environment"])[:4] == ["Stack target", "Stack project", "Stack status", "Assets commit"], \
        list(data["environment"])

    if CHROMIUM is None:
        pytest.skip("the structure is checked; the Chromium rendering needs `apt-get install chromium`")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert "swarm-stack" in dom.stdout, f"Chromium did not render the stack table: {dom.stderr[-500:]}"
    assert "Time per output token, inter-token" in dom.stdout, "the load charts did not render"
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000, "no screenshot of the report"
    shutil.copy(shot, Path(__file__).resolve().parents[1] / "reports" / "report-screenshot.png") \
        if (Path(__file__).resolve().parents[1] / "reports").is_dir() else None
