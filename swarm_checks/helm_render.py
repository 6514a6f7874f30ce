"""Rendering and linting the chart offline: the `helm` binary when present, else the Helm SDK.

helm-python-sdk binds Helm v4's Go SDK, so the chart is rendered by Helm's own template engine
even on a machine without the binary; nothing here contacts a cluster (`lookup` is empty).
"""
from __future__ import annotations

import functools
import json
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import yaml

from swarm_checks.errors import SwarmError

# Parsing the rendered YAML was 85 % of a render, and the static suite's values-read rule renders
# the chart hundreds of times, each render changing one value and so, mostly, one template's
# output. Hence libyaml's parser where PyYAML has it (its wheels do), and each template's output
# parsed once: later renders of the same text get a fresh copy of the same documents (unpickled,
# so a caller that changes them changes nothing of another's).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> bytes:
    documents = [doc for doc in yaml.load_all(text, Loader=_SAFE_LOADER) if isinstance(doc, dict) and doc.get("kind")]
    return pickle.dumps(documents, protocol=pickle.HIGHEST_PROTOCOL)


def _documents(text: str) -> list[dict[str, Any]]:
    return pickle.loads(_parsed(text))


def render(chart: Path, values: Mapping[str, Any] | None, release: str = "swarm", namespace: str = "vllm-swarm") -> list[dict[str, Any]]:
    """Every manifest the chart renders with these values (hooks and tests included)."""
    if not (chart / "Chart.yaml").exists():
        raise SwarmError(f"{chart} is not a Helm chart (no Chart.yaml): pass --chart with the chart directory")
    binary = shutil.which("helm")
    if binary:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            json.dump(dict(values or {}), handle)
        result = subprocess.run(
            [binary, "template", release, str(chart), "--namespace", namespace, "--values", handle.name],
            capture_output=True, text=True, check=False,
        )
        Path(handle.name).unlink(missing_ok=True)
        if result.returncode != 0:
            raise SwarmError(f"helm template failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no message'}")
        return _documents(result.stdout)
    try:
        import helm_python
    except ImportError:
        raise SwarmError("neither the helm binary nor helm-python-sdk is installed: `pip install 'swarm-checks[k8s]'`") from None
    try:
        rendered = helm_python.Chart.load(str(chart)).render(dict(values or {}), name=release, namespace=namespace, is_install=True)
    except helm_python.HelmError as error:
        detail = str(error).strip().splitlines()[-1]
        where = "its values fail values.schema.json" if "at '/" in detail else "a template fails"
        raise SwarmError(f"chart {chart} does not render ({where}): {detail}") from None
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        docs.extend(_documents(text))
    return docs


def lint(chart: Path, values: Mapping[str, Any] | None, kube_version: str) -> list[str]:
    """Lint findings of severity warning or error, as `path: message` lines."""
    binary = shutil.which("helm")
    if binary:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            json.dump(dict(values or {}), handle)
        result = subprocess.run([binary, "lint", str(chart), "--strict", "--kube-version", kube_version, "--values", handle.name],
                                capture_output=True, text=True, check=False)
        Path(handle.name).unlink(missing_ok=True)
        return [] if result.returncode == 0 else [line for line in result.stdout.splitlines() if "[ERROR]" in line or "[WARNING]" in line]
    try:
        import helm_python
    except ImportError:
        raise SwarmError("neither the helm binary nor helm-python-sdk is installed: `pip install 'swarm-checks[k8s]'`") from None

    report = helm_python.lint(str(chart), dict(values or {}), strict=True, kube_version=f"v{kube_version.lstrip('v')}")
    findings = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    return findings + list(report.get("errors") or [])


def default_values(chart: Path) -> dict[str, Any]:
    return yaml.safe_load((chart / "values.yaml").read_text()) or {}
