"""swarm_checks: the pytest plugin that proves a vLLM Local Swarm deployment works.

The plugin is registered through the ``pytest11`` entry point; its public surface (options,
fixtures, markers) is documented in README.md, section "Plugin reference".
"""
from swarm_checks.catalog import Catalog, Service
from swarm_checks.errors import SwarmError, SwarmUsageError
from swarm_checks.targets.base import Endpoint, ExecResult, Target

__all__ = ["Catalog", "Endpoint", "ExecResult", "Service", "SwarmError", "SwarmUsageError", "Target"]
__version__ = "0.1.0"
