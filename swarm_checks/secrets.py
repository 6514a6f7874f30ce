"""Which variables hold secrets, and reading the env files that define them: one rule for the
redactor (what never reaches a log or report) and the static suite (what must never be written
into the Compose file as a literal), so the two can never disagree on a name.
"""
from __future__ import annotations

import re
from pathlib import Path

# A name that ends like a credential (POSTGRES_PASSWORD, LANGFUSE_SALT, PROXY_API_KEYS,
# NEXTAUTH_SECRET, REDISCLI_AUTH) or carries _KEY_ inside (S3_ACCESS_KEY_ID, SECRET_KEY_BASE).
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|SALT|API_KEYS?|_KEYS?|AUTH)$|_KEY_")
# ..._FILE variables hold the path of a secret (the Docker secrets convention), not a secret.
_PATH_SUFFIX = "_FILE"


def is_secret_name(name: str) -> bool:
    """Whether the variable `name` holds a secret (case-insensitive)."""
    upper = name.upper().strip()
    return not upper.endswith(_PATH_SUFFIX) and bool(_SECRET_NAME.search(upper))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file (comments, blanks and `export ` skipped, quotes removed)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
