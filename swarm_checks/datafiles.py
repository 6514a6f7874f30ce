"""The data the plugin reads, shipped inside the package (`swarm_checks/data/`, declared as
package data in pyproject.toml) so that a non-editable `pip install` has it too: load
thresholds, the prompt material of the load workload, CRD schemas for the static chart checks,
and the service matrix the static suite holds the Compose file and the chart to."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
THRESHOLDS = DATA_DIR / "thresholds.yaml"
PROMPTS = DATA_DIR / "prompts" / "topics.txt"
CRD_SCHEMAS = DATA_DIR / "schemas"
SERVICE_MATRIX = DATA_DIR / "service_matrix.yaml"


def service_matrix() -> dict[str, Any]:
    """The specification of the stack (services, profiles, dependencies, addresses, volumes, the
    chart's components), as a fresh dictionary on each call."""
    return yaml.safe_load(SERVICE_MATRIX.read_text())
