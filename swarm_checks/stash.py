"""Where the plugin keeps its per-run and per-test state on pytest's objects.

The keys live on their own floor so that the hooks (plugin, report), the fixtures and the load
recorder can all reach the same state without importing each other.
"""
from __future__ import annotations

import pytest

from swarm_checks.catalog import Catalog
from swarm_checks.session import SwarmRun
from swarm_checks.targets.base import StackSummary

SWARM_RUN = pytest.StashKey[SwarmRun]()
# Services a test used (through swarm_endpoint): their logs go into its report when it fails.
USED_SERVICES = pytest.StashKey[set]()
# The load recorder of a test that used swarm_load (its runs go into the report).
LOAD_RECORDER = pytest.StashKey[object]()
# What the run did with its stack (set by the owner at session finish, for the summaries).
SUMMARY = pytest.StashKey[StackSummary]()


def swarm_run(config: pytest.Config) -> SwarmRun:
    """The run object the plugin created at configure time."""
    return config.stash[SWARM_RUN]


def deployment_catalog(config: pytest.Config) -> Catalog:
    """The deployment's services, for collection-time code (`pytest_generate_tests`) that runs
    before any fixture: read from the assets or the endpoints file, the stack is not touched."""
    return swarm_run(config).catalog()
