"""The proxy on a socket its parent bound (`python -m swarm_proxy.server --fd N`).

A test that picks a free port and lets the proxy bind it later races every other process for
that port: a CI run once had the other xdist worker's proxy answer there, and failed on a 401
for a key that proxy never had. These show the port is held from the moment it is chosen, that
the proxy serves on the socket it is handed, and what a wrong descriptor gets."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import httpx
import pytest

from tests.docker_helpers import wait_http
from tests.live_parts import PROXY_DIR, free_port, spawn_proxy


def _bind(port: int) -> int:
    """0 when 127.0.0.1:port could be bound and listened on now, else the errno."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
            other.listen()
        except OSError as error:
            return error.errno or -1
    return 0


def test_a_port_chosen_free_can_be_taken_before_the_server_binds_it() -> None:
    """The race itself: nothing holds a port that `free_port()` returned."""
    assert _bind(free_port()) == 0


def test_the_proxy_serves_on_the_socket_it_was_handed_and_nobody_else_can_take_it(tmp_path) -> None:
    environment = {**os.environ, "PROXY_API_KEYS": "sk-test-held-port", "PROXY_ROUTES": "*=http://127.0.0.1:9/v1",
                   "REDIS_URL": "", "OPENAI_API_KEY": ""}
    process, url = spawn_proxy(environment, tmp_path / "proxy.log")
    try:
        port = int(url.rsplit(":", 1)[1])
        assert _bind(port) == errno.EADDRINUSE, "the port was free between choosing it and the proxy serving"
        wait_http(url + "/health", 30)
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-test-held-port"}, timeout=10)
        assert models.status_code != 401, models.text
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("descriptor", ["0", "9999"])
def test_a_descriptor_that_is_no_socket_is_one_clear_line(descriptor: str) -> None:
    result = subprocess.run([sys.executable, "-m", "swarm_proxy.server", "--fd", descriptor], cwd=PROXY_DIR,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PROXY_API_KEYS": "sk-test-x", "REDIS_URL": ""})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"--fd {descriptor} is not an open socket" in last and "Traceback" not in result.stderr, result.stderr
