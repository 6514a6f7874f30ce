"""Keeping secrets out of logs, error messages and reports.

Service logs and Compose errors can echo a password (a connection string, a command line). Every
text the plugin puts into a report or a log file passes through a Redactor built from the
secret variables of the run's env files (the rule is `secrets.is_secret_name`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from swarm_checks.secrets import is_secret_name, read_env_file

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def secret_values(variables: Mapping[str, str]) -> set[str]:
    """The values of variables whose names look secret; comma lists are split into items."""
    found: set[str] = set()
    for name, value in variables.items():
        if not is_secret_name(name) or not value:
            continue
        found.add(value)
        found.update(part.strip() for part in value.split(",") if part.strip())
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every known secret in a text with ***, longest first (a key may contain another)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        self._pattern: re.Pattern[str] | None = None

    @classmethod
    def from_env_files(cls, paths: Sequence[Path], extra: Mapping[str, str] | None = None) -> "Redactor":
        variables: dict[str, str] = {}
        for path in paths:
            if path.exists():
                variables.update(read_env_file(path))
        variables.update(extra or {})
        return cls(secret_values(variables))

    def add(self, *secrets: str | None) -> None:
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if new:
            self._secrets |= new
            self._pattern = None

    def __call__(self, text: str) -> str:
        if not self._secrets or not text:
            return text
        if self._pattern is None:
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
        return self._pattern.sub(MASK, text)
