"""What the assets promise each service's API, read from the rendered Compose file at run time.

The contract tests compare a running service with these expectations, not with numbers written
in the tests: change `--maxmemory-policy` in the Compose file, or pin another PostgreSQL image,
and the expectation follows. Values come from the service's own command, environment and image
tag, as `docker compose config` renders them with the run's env files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# Langfuse v3 needs ClickHouse >= 24.3 (langfuse.com/self-hosting/infrastructure/clickhouse);
# the static suite holds the pinned image to the same minimum.
LANGFUSE_MIN_CLICKHOUSE = (24, 3)


def image_version(image: str | None) -> str | None:
    """The version an image tag pins: `postgres:17.2-bookworm` -> 17.2, `vllm/vllm-openai:v0.11.0`
    -> 0.11.0, `vllm-swarm/ray-head:2.60.0` -> 2.60.0; None for a tag without one (`latest`)."""
    if not image or ":" not in image.rsplit("/", 1)[-1]:
        return None
    tag = image.rsplit(":", 1)[1]
    match = re.match(r"v?(\d+(?:\.\d+)*)", tag)
    return match.group(1) if match else None


def version_matches(pinned: str, actual: str) -> bool:
    """A tag that pins 7.0 is met by 7.0.15; one that pins 2.60.0 only by 2.60.0 (or 2.60.0.x)."""
    want, have = pinned.split("."), re.split(r"[.+-]", actual)
    return have[: len(want)] == want


def flag(command: Sequence[Any] | str | None, name: str) -> str | None:
    """The value after `--name` in a service's command (list or string form)."""
    parts = command.split() if isinstance(command, str) else [str(part) for part in (command or [])]
    for index, part in enumerate(parts):
        if part == name and index + 1 < len(parts):
            return parts[index + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class ServiceAssets:
    """One service as the assets render it."""

    name: str
    image: str | None
    command: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return image_version(self.image)


def service_assets(rendered: Mapping[str, Any], name: str) -> ServiceAssets | None:
    """The service `name` of a `docker compose config --format json` document."""
    spec = (rendered.get("services") or {}).get(name)
    if spec is None:
        return None
    command = spec.get("command") or []
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment if "=" in item)
    return ServiceAssets(name=name, image=spec.get("image"),
                         command=[str(part) for part in (command.split() if isinstance(command, str) else command)],
                         environment={str(k): "" if v is None else str(v) for k, v in environment.items()})


@dataclass(frozen=True)
class RedisPromise:
    maxmemory_policy: str | None
    appendonly: str | None
    version: str | None


def redis_promise(assets: ServiceAssets) -> RedisPromise:
    """redis-server's flags in the command (Redis's defaults where a flag is absent)."""
    return RedisPromise(maxmemory_policy=flag(assets.command, "--maxmemory-policy") or "noeviction",
                        appendonly=flag(assets.command, "--appendonly") or "no", version=assets.version)


@dataclass(frozen=True)
class PostgresPromise:
    major: str | None
    user: str
    databases: Mapping[str, str]  # name -> owner
    encoding: str = "UTF8"  # the upstream image's initdb default, and the local image's --encoding


def postgres_promise(assets: ServiceAssets) -> PostgresPromise:
    """POSTGRES_DB is created by the entrypoint, LANGFLOW_DB by configs/postgres/init-databases.sh,
    both as POSTGRES_USER, so both are owned by it."""
    env = assets.environment
    user = env.get("POSTGRES_USER") or "postgres"
    names = [env.get("POSTGRES_DB") or user, env.get("LANGFLOW_DB") or ""]
    version = assets.version
    return PostgresPromise(major=version.split(".")[0] if version else None, user=user,
                           databases={name: user for name in names if name})
