"""Benchmark (not a test): how long the CI stack takes to become ready, and how long the smoke
suite takes against a running stack.

    .venv/bin/python benchmarks/stack_readiness.py [--runs 3]

Per run: `pytest suites/smoke --keep-stack` stands the CPU stack up from warm images (the local
image set) and records each service's time from `docker compose up` to ready; then
`pytest suites/smoke --reuse-stack` runs against the running stack and its wall time is taken;
then the stack is removed. Prints every run and the median of each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm_checks import orphans  # noqa: E402

SERVICES = "redis,postgres,ray-head,ray-worker,llm-cpu,proxy"


def live_args(log_dir: Path) -> list[str]:
    env_file = ROOT / "compose" / (".env" if (ROOT / "compose" / ".env").exists() else ".env.example")
    args = ["--target=compose", "--profile=cpu", "--profile=proxy", f"--env-file={env_file}",
            f"--services={SERVICES}", f"--log-dir={log_dir}", "-p", "no:cacheprovider", "-q"]
    images = ROOT / "compose" / "images.env"
    if images.exists():
        args.append(f"--env-file={images}")
    return args


def pytest(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "suites/smoke", *args], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, **(env or {})}, timeout=1200)
    return result.returncode, time.perf_counter() - started, result.stdout + result.stderr


def one_run() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        code, first_wall, output = pytest([*live_args(log_dir), "--keep-stack"])
        record = json.loads((log_dir / "readiness.json").read_text()) if (log_dir / "readiness.json").exists() else {}
        project = record.get("project", "")
        try:
            if code != 0 or not project:
                raise SystemExit(f"the first smoke run failed (exit {code}):\n{output[-3000:]}")
            code, smoke_wall, output = pytest([*live_args(log_dir), "--reuse-stack"], env={"COMPOSE_PROJECT_NAME": project})
            if code != 0:
                raise SystemExit(f"the smoke run against the running stack failed (exit {code}):\n{output[-3000:]}")
        finally:
            if project:
                orphans.remove_project(project)
    services = {name: item["seconds"] for name, item in record["services"].items()}
    return {"up_to_all_ready": max(services.values()), "services": services, "smoke_running_stack": smoke_wall,
            "first_smoke_including_up": first_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="how many times to stand the stack up (default 3)")
    runs = [one_run() for _ in range(parser.parse_args().runs)]
    names = sorted(runs[0]["services"], key=lambda n: runs[0]["services"][n])
    print(f"CI stack ({SERVICES}), warm images, {len(runs)} run(s); seconds")
    header = f"{'':<34}" + "".join(f"run {i + 1:<5}" for i in range(len(runs))) + "median"
    print(header)

    def row(label: str, values: list[float]) -> None:
        print(f"{label:<34}" + "".join(f"{v:<9.1f}" for v in values) + f"{statistics.median(values):.1f}")

    row("up -> all services ready", [r["up_to_all_ready"] for r in runs])
    for name in names:
        row(f"  {name} ready", [r["services"][name] for r in runs])
    row("suites/smoke on the running stack", [r["smoke_running_stack"] for r in runs])
    row("suites/smoke incl. up (kept)", [r["first_smoke_including_up"] for r in runs])


if __name__ == "__main__":
    main()
