"""A Kubernetes API server that answers Helm's `lookup` from objects a test holds.

No cluster runs here, and the chart's upgrade path depends on what `lookup` returns (the stored
Secret, or nothing). Helm's lookup asks the API server three things: the resources of a group
version (discovery, `GET /api/v1`), one object (`GET /api/v1/namespaces/NS/secrets/NAME`, 404 when
absent) and a list (`GET /api/v1/namespaces/NS/secrets`). This server answers those from a dict,
over plain HTTP on 127.0.0.1, and records every path asked; helm-python-sdk's cluster-aware render
(`Config.render`) talks to it through an ordinary kubeconfig, so the chart runs exactly as against
a cluster's API server for these calls.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_RESOURCES = {"secrets": "Secret", "configmaps": "ConfigMap"}
_OBJECT = re.compile(r"^/api/v1/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?$")


class FakeKubeApi:
    """Objects keyed by (plural resource, namespace, name); `with FakeKubeApi() as api:` serves them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def put(self, manifest: dict[str, Any], namespace: str) -> None:
        """Store a manifest as the API server would hold it (a Secret rendered by the chart, say)."""
        plural = next(p for p, kind in _RESOURCES.items() if kind == manifest["kind"])
        stored = {**manifest, "metadata": {**manifest.get("metadata", {}), "namespace": namespace}}
        self.objects[(plural, namespace, manifest["metadata"]["name"])] = stored

    def kubeconfig(self) -> str:
        assert self._server is not None, "the fake API server is not started"
        host, port = self._server.server_address[:2]
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://{host}:{port}'}}}}]\n"
            "users: [{name: fake, user: {token: fake-token}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n"
            "current-context: fake\n"
        )

    def _answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/api/v1":
            return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": ["get", "list"]}
                for plural, kind in _RESOURCES.items()]}
        match = _OBJECT.match(path)
        if not match or match.group(2) not in _RESOURCES:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        namespace, plural, name = match.groups()
        if name is None:
            items = [obj for (p, ns, _), obj in sorted(self.objects.items()) if p == plural and ns == namespace]
            return 200, {"apiVersion": "v1", "kind": f"{_RESOURCES[plural]}List", "metadata": {"resourceVersion": "1"}, "items": items}
        found = self.objects.get((plural, namespace, name))
        if found is None:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": f'{plural} "{name}" not found'}
        return 200, found

    def __enter__(self) -> FakeKubeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                status, body = api._answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
