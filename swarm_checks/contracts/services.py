"""The platform's own APIs: Ray's Jobs API, vLLM's server endpoints beside the OpenAI ones,
Langfuse's public API, and the health and authentication of Open WebUI and Langflow.

Like datastores.py, each check raises `ContractViolation` with a rule name and is shared by the
suite and by the framework's tests against deliberately broken doubles.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

from swarm_checks.contracts.assets import version_matches
from swarm_checks.contracts.datastores import require_refused
from swarm_checks.contracts.openai_contract import require, violation

TIMEOUT = 60.0
JOB_SECONDS = 180.0
FINAL = ("SUCCEEDED", "FAILED", "STOPPED")
VERSIONS_JOB = '''
import json, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]

@ray.remote(num_cpus=0)
def versions():
    import ray, sys
    return {"node": ray.get_runtime_context().get_node_id(), "ray": ray.__version__, "python": sys.version.split()[0]}

refs = [versions.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n, soft=False)).remote() for n in nodes]
print("SWARM_RESULT " + json.dumps(ray.get(refs, timeout=120)))
'''
SLEEPING_JOB = "import time\nprint('SWARM_STARTED', flush=True)\ntime.sleep(600)\n"


def _entrypoint(script: str) -> str:
    encoded = base64.b64encode(script.encode()).decode()
    return f"python -c \"import base64; exec(base64.b64decode('{encoded}').decode())\""


class RayJobs:
    """The dashboard's Jobs REST API (/api/jobs/): what `ray job submit` uses, no Ray client needed."""

    def __init__(self, root_url: str) -> None:
        self.root = root_url.rstrip("/")
        self.submitted: list[str] = []

    def submit(self, script: str) -> str:
        submission_id = f"swarm-contract-{uuid.uuid4().hex[:12]}"
        answer = httpx.post(f"{self.root}/api/jobs/", json={"entrypoint": _entrypoint(script),
                                                           "submission_id": submission_id}, timeout=TIMEOUT)
        require(answer.status_code == 200, "ray-submit", f"POST /api/jobs/ answered {answer.status_code}: {answer.text[:200]}")
        require(answer.json().get("submission_id") == submission_id, "ray-submit",
                f"the submission id was not kept: {answer.text[:200]}")
        self.submitted.append(submission_id)
        return submission_id

    def status(self, submission_id: str) -> str:
        answer = httpx.get(f"{self.root}/api/jobs/{submission_id}", timeout=TIMEOUT)
        require(answer.status_code == 200, "ray-status", f"GET /api/jobs/{submission_id} answered {answer.status_code}")
        return str(answer.json().get("status"))

    def logs(self, submission_id: str) -> str:
        answer = httpx.get(f"{self.root}/api/jobs/{submission_id}/logs", timeout=TIMEOUT)
        require(answer.status_code == 200, "ray-logs", f"GET .../logs answered {answer.status_code}")
        return str(answer.json().get("logs", ""))

    def wait(self, submission_id: str, until: Callable[[str], bool], seconds: float = JOB_SECONDS) -> str:
        deadline = time.monotonic() + seconds
        status = self.status(submission_id)
        while not until(status) and time.monotonic() < deadline:
            time.sleep(1.0)
            status = self.status(submission_id)
        return status

    def cleanup(self) -> None:
        for submission_id in self.submitted:
            try:
                if self.status(submission_id) not in FINAL:
                    httpx.post(f"{self.root}/api/jobs/{submission_id}/stop", timeout=TIMEOUT)
                    self.wait(submission_id, lambda s: s in FINAL, 60)
                httpx.delete(f"{self.root}/api/jobs/{submission_id}", timeout=TIMEOUT)
            except (httpx.HTTPError, AssertionError):
                pass


def check_ray_versions(root_url: str, pinned: str | None) -> list[dict[str, Any]]:
    """A job runs a task on every alive node; every node runs the same Ray (the pinned one) and
    the same Python as the head: a client's pickled functions depend on both."""
    head_version = httpx.get(f"{root_url}/api/version", timeout=TIMEOUT).json().get("ray_version")
    if pinned:
        require(version_matches(pinned, str(head_version)), "ray-version", f"the head runs Ray {head_version}, "
                                                                           f"the image pins {pinned}")
    jobs = RayJobs(root_url)
    try:
        job = jobs.submit(VERSIONS_JOB)
        status = jobs.wait(job, lambda s: s in FINAL)
        logs = jobs.logs(job)
        require(status == "SUCCEEDED", "ray-job-succeeds", f"the job ended {status}; its log:\n{logs[-1500:]}")
        line = next((l for l in logs.splitlines() if l.startswith("SWARM_RESULT ")), None)
        require(line is not None, "ray-logs", f"the job's log lacks what it printed:\n{logs[-1500:]}")
        nodes = json.loads(str(line).removeprefix("SWARM_RESULT "))
    finally:
        jobs.cleanup()
    require(len(nodes) >= 2, "ray-nodes", f"only {len(nodes)} node(s) answered: no worker to compare with the head")
    seen = {(node["ray"], node["python"]) for node in nodes}
    require(len(seen) == 1, "ray-versions-equal", f"head and workers differ (ray, python): {sorted(seen)}")
    require(str(head_version) == nodes[0]["ray"], "ray-versions-equal",
            f"the dashboard reports {head_version}, the nodes run {nodes[0]['ray']}")
    return nodes


def check_ray_job_lifecycle(root_url: str) -> None:
    """Submit, see it run, read its log, stop it, see it stopped; an unknown job is a 404."""
    jobs = RayJobs(root_url)
    try:
        job = jobs.submit(SLEEPING_JOB)
        status = jobs.wait(job, lambda s: s != "PENDING")
        require(status == "RUNNING", "ray-job-runs", f"the job is {status}, expected RUNNING")
        deadline = time.monotonic() + 60
        while "SWARM_STARTED" not in jobs.logs(job) and time.monotonic() < deadline:
            time.sleep(1.0)
        require("SWARM_STARTED" in jobs.logs(job), "ray-logs", "the running job's log lacks what it printed")
        stopped = httpx.post(f"{root_url}/api/jobs/{job}/stop", timeout=TIMEOUT)
        require(stopped.status_code == 200 and stopped.json().get("stopped") is True, "ray-stop",
                f"POST .../stop answered {stopped.status_code}: {stopped.text[:200]}")
        status = jobs.wait(job, lambda s: s in FINAL, 60)
        require(status == "STOPPED", "ray-stop", f"the job is {status} a minute after it was stopped")
    finally:
        jobs.cleanup()
    unknown = httpx.get(f"{root_url}/api/jobs/swarm-contract-no-such-job", timeout=TIMEOUT)
    require(unknown.status_code == 404, "ray-unknown-job", f"an unknown job answered {unknown.status_code}")


def check_vllm_version(root_url: str, pinned: str | None) -> str:
    answer = httpx.get(f"{root_url}/version", timeout=TIMEOUT)
    require(answer.status_code == 200, "vllm-version", f"GET /version answered {answer.status_code}")
    version = str(answer.json().get("version"))
    if pinned:
        require(version_matches(pinned, version), "vllm-version", f"vLLM {version}, the image pins {pinned}")
    return version


def check_vllm_metrics(root_url: str, model: str, names: dict[str, tuple[str, ...]]) -> None:
    """The series the load and gpu suites read exist, and a request moves the token counters by
    at least its usage (`names`: what -> candidate series, from swarm_checks.load.server_metrics)."""
    from swarm_checks.load import server_metrics

    before = server_metrics.scrape(f"{root_url}/metrics") or {}
    for what, candidates in names.items():
        require(any(name in before for name in candidates), "vllm-metric",
                f"/metrics has none of {list(candidates)} ({what})")
    request = {"model": model, "prompt": "The sea is", "max_tokens": 4, "temperature": 0.0}
    answer = httpx.post(f"{root_url}/v1/completions", json=request, timeout=180)
    require(answer.status_code == 200, "valid-accepted", f"POST /v1/completions answered {answer.status_code}")
    usage = answer.json()["usage"]
    after = server_metrics.scrape(f"{root_url}/metrics") or {}
    for what, key in (("generated", "completion_tokens"), ("prompt", "prompt_tokens")):
        name = next((n for n in names.get(what, ()) if n in after), None)
        if name is not None:
            require(after[name] - before.get(name, 0.0) >= usage[key], "vllm-metric-counts",
                    f"{name} rose by {after[name] - before.get(name, 0.0):g}, the answer's usage says {usage[key]}")


def tokenize_roundtrip(root_url: str, model: str) -> Callable[[str], None]:
    """A check for Hypothesis: /detokenize gives back what /tokenize took, /tokenize counts what
    /v1/completions bills as prompt_tokens."""
    def check(text: str) -> None:
        plain = httpx.post(f"{root_url}/tokenize", json={"model": model, "prompt": text, "add_special_tokens": False},
                           timeout=TIMEOUT)
        require(plain.status_code == 200, "tokenize", f"/tokenize answered {plain.status_code}: {plain.text[:200]}")
        tokens = plain.json().get("tokens")
        require(isinstance(tokens, list) and plain.json().get("count") == len(tokens), "tokenize-count",
                f"/tokenize count {plain.json().get('count')} for {len(tokens or [])} tokens")
        back = httpx.post(f"{root_url}/detokenize", json={"model": model, "tokens": tokens}, timeout=TIMEOUT)
        require(back.status_code == 200, "detokenize", f"/detokenize answered {back.status_code}: {back.text[:200]}")
        require(back.json().get("prompt") == text, "tokenize-roundtrip",
                f"/detokenize(/tokenize({text!r})) gave {back.json().get('prompt')!r}")
        billed = httpx.post(f"{root_url}/tokenize", json={"model": model, "prompt": text}, timeout=TIMEOUT).json()
        answer = httpx.post(f"{root_url}/v1/completions", json={"model": model, "prompt": text, "max_tokens": 1},
                            timeout=180)
        require(answer.status_code == 200, "valid-accepted", f"/v1/completions answered {answer.status_code}")
        prompt_tokens = answer.json()["usage"]["prompt_tokens"]
        require(prompt_tokens == billed.get("count"), "tokenize-usage",
                f"/tokenize counts {billed.get('count')} tokens, /v1/completions bills {prompt_tokens}")
    return check


def check_langfuse(root_url: str, public_key: str | None, secret_key: str | None, project_id: str | None) -> None:
    """Health and readiness; the init keys open the public API (wrong ones do not); an
    ingestion batch is accepted event by event (HTTP 207, no error)."""
    health = httpx.get(f"{root_url}/api/public/health", timeout=TIMEOUT)
    require(health.status_code == 200 and health.json().get("status") == "OK", "langfuse-health",
            f"/api/public/health answered {health.status_code}: {health.text[:200]}")
    ready = httpx.get(f"{root_url}/api/public/ready", timeout=TIMEOUT)
    require(ready.status_code == 200, "langfuse-ready", f"/api/public/ready answered {ready.status_code}")
    auth = (public_key or "", secret_key or "")
    projects = httpx.get(f"{root_url}/api/public/projects", auth=auth, timeout=TIMEOUT)
    require(projects.status_code == 200, "langfuse-keys", f"the init keys were refused: HTTP {projects.status_code}")
    if project_id:
        ids = [p.get("id") for p in projects.json().get("data", [])]
        require(project_id in ids, "langfuse-project", f"project {project_id!r} not among {ids}")
    wrong = httpx.get(f"{root_url}/api/public/projects", auth=("pk-lf-wrong", "sk-lf-wrong"), timeout=TIMEOUT)
    require(wrong.status_code == 401, "langfuse-auth", f"wrong keys answered {wrong.status_code}")
    event_id, trace_id = str(uuid.uuid4()), str(uuid.uuid4())
    batch = {"batch": [{"id": event_id, "timestamp": datetime.now(timezone.utc).isoformat(), "type": "trace-create",
                        "body": {"id": trace_id, "name": "swarm-contract"}}]}
    ingested = httpx.post(f"{root_url}/api/public/ingestion", json=batch, auth=auth, timeout=TIMEOUT)
    require(ingested.status_code in (200, 207), "langfuse-ingestion", f"ingestion answered {ingested.status_code}")
    result = ingested.json()
    require(not result.get("errors") and [s.get("id") for s in result.get("successes", [])] == [event_id],
            "langfuse-ingestion", f"the batch was not accepted event by event: {str(result)[:300]}")


def check_open_webui(root_url: str) -> None:
    health = httpx.get(f"{root_url}/health", timeout=TIMEOUT)
    require(health.status_code == 200, "webui-health", f"/health answered {health.status_code}")
    require_refused(httpx.get(f"{root_url}/api/v1/auths/", timeout=TIMEOUT), "webui-auth", "GET /api/v1/auths/")


def check_langflow(root_url: str) -> None:
    for path in ("/health", "/health_check"):
        answer = httpx.get(root_url + path, timeout=TIMEOUT)
        if answer.status_code != 200:
            raise violation("langflow-health", f"{path} answered {answer.status_code}: {answer.text[:200]}")
    require_refused(httpx.get(f"{root_url}/api/v1/flows/", timeout=TIMEOUT), "langflow-auth", "GET /api/v1/flows/")
