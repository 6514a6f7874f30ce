"""Compose's error output, turned into one line that says what is wrong and what to do."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from swarm_checks import compose_cli
from swarm_checks.redaction import Redactor


def explain(stderr: str, redact: Redactor, images: Mapping[str, str] | None = None) -> str:
    """Compose's error output as one line saying what is wrong and what to do.

    `images` (service -> image) names the image when Compose only names the service that
    failed to pull.
    """
    text = redact(stderr)
    pull = re.search(r"^\s*(\S+) Error (.*)$", text, re.M)
    if pull and (images or {}).get(pull.group(1)):
        name = images[pull.group(1)]  # type: ignore[index]
        return (f"image {name} is not available locally and could not be pulled ({pull.group(2).strip()[:160]}): "
                "build the local image set with scripts/build-image-set.sh and pass --env-file compose/images.env, "
                "or check access to its registry")
    if re.search(r"Cannot connect to the Docker daemon|docker\.sock.*(no such file|connection refused)|permission denied.*docker\.sock", text, re.I):
        return ("the Docker engine is not reachable: start it (`dockerd &` or `systemctl start docker`), "
                "or point DOCKER_HOST at a running engine")
    bind = re.search(r"(?:Bind for |listen tcp4? )([0-9.:\[\]]+:\d+)(?: failed)?:? .*?(port is already allocated|address already in use)", text)
    if bind or "port is already allocated" in text or "address already in use" in text:
        where = bind.group(1) if bind else "a published port"
        return (f"host port {where} is already in use: stop what listens there, set that *_PORT variable to a "
                "free port (empty for a random one), or use --host-ports=random")
    image = re.search(r"No such image: (\S+)|pull access denied for (\S+?),|image \"?(\S+?)\"? not found|failed to resolve reference \"?([^\"\s]+)", text)
    if image:
        name = next(group for group in image.groups() if group)
        return (f"image {name} is not available locally and could not be pulled: build the local image set with "
                "scripts/build-image-set.sh and pass --env-file compose/images.env, or pull it first")
    unhealthy = re.search(r"dependency failed to start: container (\S+) (is unhealthy|exited \(\d+\))", text)
    if unhealthy:
        return f"container {unhealthy.group(1)} {unhealthy.group(2)}, so the services that depend on it were not started"
    return compose_cli.first_error_line(text)


def culprits(stderr: str, services: Sequence[str]) -> list[str]:
    """Services a Compose error names (its container names contain the service name)."""
    return [name for name in services if re.search(rf"-{re.escape(name)}-\d+\b", stderr)]
