"""In-stack access for the integration suite: where the services reach each other, and commands
and HTTP requests run inside them.

Why inside: the paths the swarm uses are service to service (a Ray worker calls `proxy:8080`,
the proxy calls `llm:8000`), not host to published port. It also keeps the checks after a fault
independent of host ports, which a restarted container may publish anew. Everything goes
through `Target.exec(service, argv)`, so it works wherever the target can run commands
(Compose now, Kubernetes later); the helpers take the exec function itself, so the framework's
tests can hand them `docker exec` against containers of their own.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from swarm_checks import Catalog, Endpoint, ExecResult

ExecFn = Callable[[str, Sequence[str]], ExecResult]

# Run by the python3 of a service's image (the proxy's and Ray's have one): one HTTP request to an
# address only the stack can reach, answered as one JSON line. urllib: no package needed there.
_HTTP_SCRIPT = r'''
import json, sys, urllib.request, urllib.error
method, url, headers, body, timeout = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], float(sys.argv[5])
request = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        status, got, text = answer.status, dict(answer.headers), answer.read().decode()
except urllib.error.HTTPError as error:
    status, got, text = error.code, dict(error.headers), error.read().decode()
except Exception as error:
    status, got, text = 0, {}, f"{type(error).__name__}: {error}"
print("SWARM_HTTP " + json.dumps({"status": status, "headers": {k.lower(): v for k, v in got.items()}, "body": text}))
'''

_TCP_SCRIPT = r'''
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError as error:
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
'''


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP answer seen from inside the stack; status 0 means no answer (refused, timed out)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def in_stack_url(target_name: str, catalog: Catalog, endpoint: Endpoint) -> str | None:
    """The address other services of the stack use for this one, or None where it is unknown.

    An endpoints file may say it (`extra: {in_stack_url: ...}`); on Compose it is the service
    name on the project network and the port of its `swarm.port` label (the proxy reaches `llm`,
    Ray workers reach `proxy:8080`). A Kubernetes target would give its Service DNS name.
    """
    given = endpoint.extra.get("in_stack_url")
    if given:
        return given.rstrip("/")
    if target_name != "compose":
        return None
    service = catalog.services.get(endpoint.service)
    port = service.port if service and service.port else endpoint.port
    base = f"http://{endpoint.service}:{port}"
    return base + "/v1" if endpoint.kind in ("llm", "proxy") else base


def http_in(run: ExecFn, service: str, method: str, url: str, *, headers: Mapping[str, str] | None = None,
            body: Any = None, timeout: float = 15.0) -> HttpAnswer:
    """One HTTP request made from inside `service` (its python3), e.g. to `127.0.0.1:8081`."""
    payload = "" if body is None else (body if isinstance(body, str) else json.dumps(body))
    sent = {"Content-Type": "application/json", **(headers or {})} if payload else dict(headers or {})
    result = run(service, ["python3", "-c", _HTTP_SCRIPT, method, url, json.dumps(sent), payload, str(timeout)])
    line = next((l for l in result.output.splitlines() if l.startswith("SWARM_HTTP ")), None)
    if line is None:
        return HttpAnswer(0, {}, f"no answer from inside {service} (exit {result.exit_code}): {result.output[-300:]}")
    data = json.loads(line.removeprefix("SWARM_HTTP "))
    return HttpAnswer(int(data["status"]), data["headers"], data["body"])


def reachable_from(run: ExecFn, service: str, host: str, port: int) -> bool:
    """Whether `service` can open a TCP connection to host:port (the in-stack view of an outage)."""
    try:
        return run(service, ["python3", "-c", _TCP_SCRIPT, host, str(port)]).exit_code == 0
    except Exception:  # noqa: BLE001 - a neighbour that cannot be asked counts as "cannot reach"
        return False


def redis_cli(run: ExecFn, *args: str, service: str = "redis", db: int = 0) -> str:
    """redis-cli inside the Redis service (the Compose file sets REDISCLI_AUTH there)."""
    result = run(service, ["redis-cli", "-n", str(db), *args])
    if result.exit_code != 0:
        raise RuntimeError(f"redis-cli {' '.join(args[:1])} failed (exit {result.exit_code}): {result.output[-300:]}")
    return result.output.strip()


def psql(run: ExecFn, sql: str, *, service: str = "postgres", database: str = "") -> str:
    """psql inside the PostgreSQL service as POSTGRES_USER over the local socket (unaligned, tuples only)."""
    script = 'psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "${1:-$POSTGRES_DB}" -tA -c "$2"'
    result = run(service, ["sh", "-c", script, "sh", database, sql])
    if result.exit_code != 0:
        raise RuntimeError(f"psql failed (exit {result.exit_code}): {result.output[-300:]}")
    return result.output.strip()


def postgres_ready(run: ExecFn, service: str = "postgres") -> bool:
    try:
        return run(service, ["sh", "-c", 'pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER"']).exit_code == 0
    except Exception:  # noqa: BLE001 - a stopped container cannot run the check: not ready
        return False


def redis_ready(run: ExecFn, service: str = "redis") -> bool:
    try:
        return redis_cli(run, "PING", service=service) == "PONG"
    except Exception:  # noqa: BLE001 - stopped, loading, refusing: not ready
        return False


def ray_nodes(run: ExecFn, head: str = "ray-head") -> list[dict[str, Any]]:
    """The Ray nodes as the head's state API lists them, asked from inside the head."""
    answer = http_in(run, head, "GET", "http://127.0.0.1:8265/api/v0/nodes?limit=200", headers={"Accept": "application/json"})
    if answer.status != 200:
        raise RuntimeError(f"the Ray state API answered {answer.status}: {answer.body[:200]}")
    result = answer.json().get("data", {}).get("result", {})
    return list(result.get("result", result) if isinstance(result, dict) else result)


def alive_ray_nodes(run: ExecFn, head: str = "ray-head") -> list[dict[str, Any]]:
    try:
        return [node for node in ray_nodes(run, head) if node.get("state") == "ALIVE"]
    except Exception:  # noqa: BLE001 - a head that is down lists nothing alive
        return []


def wait_until(check: Callable[[], Any], limit: float, what: str, interval: float = 1.0) -> float:
    """Poll `check` until it returns something truthy; the seconds it took. Fails (AssertionError)
    after `limit` seconds, naming `what` and the last exception the check raised."""
    started = time.monotonic()
    last: str = ""
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as error:  # noqa: BLE001 - recorded, retried until the limit
            last = f" (last error: {type(error).__name__}: {str(error)[:200]})"
        if time.monotonic() - started > limit:
            raise AssertionError(f"{what}: not within {limit:g} s{last}")
        time.sleep(interval)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(key, "").strip('"') == wanted for key, wanted in labels.items()):
            total += float(value)
    return total


def host_http(base_url: str) -> Callable[[str, str, Any], tuple[int, Any]]:
    """(method, path, json) -> (status, json) against a published address, from the test host."""
    import httpx

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        answer = httpx.request(method, base_url.rstrip("/") + path, json=body, timeout=30)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text

    return call


def exec_http(run: ExecFn, service: str, base_url: str) -> Callable[[str, str, Any], tuple[int, Any]]:
    """The same, sent from inside `service` (e.g. the Ray head's own dashboard at 127.0.0.1:8265)."""

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        answer = http_in(run, service, method, base_url.rstrip("/") + path, body=body, timeout=30)
        try:
            return answer.status, answer.json()
        except ValueError:
            return answer.status, answer.body

    return call
