"""A static rule and what it finds: the vocabulary every rule module of this package shares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

import pytest

Assets = TypeVar("Assets")


@dataclass(frozen=True)
class Violation:
    """One broken rule on one object."""

    obj: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.obj}: rule '{self.rule}': {self.detail}"


@dataclass(frozen=True)
class Rule(Generic[Assets]):
    """A named check over a set of assets."""

    name: str
    doc: str
    check: Callable[[Assets], Iterable[Violation]]


def is_pinned(image: str) -> bool:
    """An image reference with an explicit tag other than `latest`, or a digest."""
    last = image.rsplit("/", 1)[-1]
    return "@sha256:" in image or (":" in last and not last.endswith(":latest"))


def fail_on(violations: Iterable[Violation]) -> None:
    """Fail the calling test with one line per violation and no Python traceback."""
    found = sorted(set(violations), key=str)
    if found:
        pytest.fail(f"{len(found)} violation(s):\n" + "\n".join(f"  {v}" for v in found), pytrace=False)
