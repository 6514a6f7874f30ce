"""The proxy's settings as the chart and Compose hand them over: every PROXY_* value they set is
one the proxy accepts (config.from_environment stops with one line on a bad one), and the two set
the same PROXY_* names, which .env.example and README document. The chart once rendered
PROXY_MAX_BODY_BYTES as "4.194304e+06" (Helm's numbers are floats, and `quote` kept the float):
the proxy would not have started."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from swarm_checks.helm_render import render
from tests.live_parts import PROXY_DIR

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = re.compile(r"^\$\{(?P<name>\w+):?-(?P<default>[^}]*)\}$")


def _from_environment(environ: dict[str, str]) -> object:
    sys.path.insert(0, str(PROXY_DIR))
    try:
        from swarm_proxy.config import from_environment
    finally:
        sys.path.remove(str(PROXY_DIR))
    return from_environment({"PROXY_API_KEYS": "sk-settings-test", **environ})


def chart_env(values: dict | None = None) -> dict[str, str]:
    """The literal PROXY_* values of the proxy container the chart renders."""
    for document in render(ROOT / "helm", {"proxy": {"enabled": True}, "secrets": {"generate": "offline"}, **(values or {})}):
        if document.get("kind") == "Deployment" and document["metadata"]["name"].endswith("proxy"):
            env = document["spec"]["template"]["spec"]["containers"][0]["env"]
            return {e["name"]: e["value"] for e in env if e["name"].startswith("PROXY_") and "value" in e}
    raise AssertionError("the chart rendered no proxy Deployment")


def compose_env() -> dict[str, str]:
    """The defaults of the PROXY_* variables the Compose file gives the proxy."""
    service = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())["services"]["proxy"]
    found = {}
    for name, value in service["environment"].items():
        match = DEFAULT.match(str(value))
        if name.startswith("PROXY_") and match:
            found[name] = match["default"]
    return found


def test_the_charts_proxy_settings_are_accepted_by_the_proxy() -> None:
    env = chart_env()
    assert {"PROXY_CACHE_MAX_BYTES", "PROXY_CACHE_MAX_ENTRY_BYTES", "PROXY_MAX_BODY_BYTES"} <= set(env)
    settings = _from_environment(env)  # a value it refuses is a SystemExit naming the variable
    assert settings.max_body_bytes == 4 * 1024 * 1024 and settings.cache_max_bytes == 64 * 1024 * 1024
    assert settings.early_admission is True
    assert _from_environment({**env, "PROXY_EARLY_ADMISSION": "false"}).early_admission is False


def test_a_float_the_proxy_refuses_names_the_variable() -> None:
    """The broken variant of the test above: the value the chart used to render."""
    with pytest.raises(SystemExit, match="PROXY_MAX_BODY_BYTES must be an integer"):
        _from_environment({"PROXY_MAX_BODY_BYTES": "4.194304e+06"})


def test_compose_and_the_chart_set_the_same_proxy_settings_and_the_docs_name_them() -> None:
    chart, compose = chart_env(), compose_env()
    _from_environment(compose)
    assert set(chart) - {"PROXY_ROUTES"} == set(compose) - {"PROXY_ROUTES"}, set(chart) ^ set(compose)
    example = (ROOT / "compose" / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in compose:
        assert f"\n{name}=" in example, f"compose/.env.example does not set {name}"
        assert f"`{name}" in readme, f"README does not name {name}"
