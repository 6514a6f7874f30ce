"""Fresh, non-editable installs of swarm-checks for the packaging tests: one wheel built from a
copy of the sources, one virtual environment per set of extras, shared by the whole session.

Tests using `fresh_install` carry `pytest.mark.xdist_group(GROUP)`, so under
`--dist loadgroup` they run on one worker and each environment is built once (about 3 s for
the wheel, 3 to 12 s per environment here: the host's pip installs into an environment made
without pip, from its cache and configured indexes, without compiling bytecode).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUP = "packaging"
SKIP_REASON = "SWARM_SKIP_PIP_INSTALL is set" if os.environ.get("SWARM_SKIP_PIP_INSTALL") else None
# What a child process must not inherit from this test run: another pytest's or xdist's
# variables, this run's swarm options, an interpreter path that would reach the repository.
_NOT_INHERITED = ("PYTEST_", "SWARM_", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "COV_CORE_")


@dataclass(frozen=True)
class Venv:
    root: Path
    extras: str

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def env(self, path: str | None = None, **extra: str) -> dict[str, str]:
        """This process's environment without what must not leak, this venv's bin/ first on PATH;
        `path` replaces the rest of PATH (e.g. "" for a machine without docker, helm, kubectl)."""
        rest = os.environ.get("PATH", "") if path is None else path
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        return {**env, "PATH": os.pathsep.join(p for p in (str(self.bin), rest) if p), **extra}

    def run(self, args: Sequence[str], cwd: Path, path: str | None = None, timeout: float = 300,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`args` with args[0] taken from this venv's bin/ ("python", "pytest")."""
        command = [str(self.bin / args[0]), *args[1:]]
        return subprocess.run(command, cwd=cwd, env=self.env(path, **(env or {})), capture_output=True, text=True,
                              timeout=timeout, check=False)


def _pip(args: Sequence[str], what: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600,
                            check=False)
    if result.returncode != 0:
        last = [line for line in result.stderr.strip().splitlines() if not line.startswith("WARNING")][-1:]
        pytest.skip(f"pip could not {what} here: {last}")


def build_wheel(directory: Path) -> Path:
    """The wheel of a copy of the sources (pip builds in the tree it is given: build/, egg-info)."""
    source = directory / "source"
    shutil.copytree(ROOT / "swarm_checks", source / "swarm_checks", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(directory / "dist"), str(source)], "build the wheel")
    return next((directory / "dist").glob("swarm_checks-*.whl"))


def make_venv(root: Path, wheel: Path, extras: str) -> Venv:
    """A fresh venv holding the wheel with `extras` ("" for none) and what they require, only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    venv = Venv(root, extras)
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    _pip(["--python", venv.python, "install", "--quiet", "--no-compile", spec], f"install swarm-checks[{extras}]")
    return venv


@pytest.fixture(scope="session")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Venv]:
    """fresh_install("clients") -> a venv with `pip install swarm-checks[clients]` (non-editable),
    built on first use and shared by the session."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    base = tmp_path_factory.mktemp("fresh-installs")
    wheels: list[Path] = []
    venvs: dict[str, Venv] = {}

    def install(extras: str = "") -> Venv:
        if not wheels:
            wheels.append(build_wheel(base / "wheel"))
        if extras not in venvs:
            venvs[extras] = make_venv(base / (extras.replace(",", "+") or "core"), wheels[0], extras)
        return venvs[extras]

    return install
