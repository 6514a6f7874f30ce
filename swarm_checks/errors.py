"""Errors the plugin raises, each carrying one line that tells the user what to do.

``SwarmUsageError`` is a ``pytest.UsageError``: pytest prints it as one ``ERROR:`` line with no
traceback and exits with status 4, which is what a bad option or a bad file deserves.
``SwarmError`` is for problems found while running (a stack that never becomes healthy, an
engine that is missing); fixtures turn it into a failure without a Python traceback.
"""
from __future__ import annotations

from typing import NoReturn, Sequence

import pytest


class SwarmError(Exception):
    """A run-time problem with the stack or its environment, worded for the user."""


class SwarmUsageError(pytest.UsageError):
    """Bad options or input files: one line, what is wrong and what to do."""


class TargetCapabilityError(SwarmError):
    """The chosen target cannot do this (for example read logs of an external stack)."""


class StackError(SwarmError):
    """The stack did not come up; `services` names those concerned (their logs go in the report)."""

    def __init__(self, message: str, services: "Sequence[str]" = ()) -> None:
        super().__init__(message)
        self.services = tuple(services)
        self.logs: dict[str, str] = {}


def fail(message: str) -> NoReturn:
    """Fail the current test or fixture with `message` alone: no traceback, no chained error."""
    raise pytest.fail.Exception(message, pytrace=False) from None
