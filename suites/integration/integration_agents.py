"""Flow 1: agents on Ray call the LLM through the proxy.

A Ray job (the dashboard's Jobs REST API, so the test host needs no Ray) fans agent tasks out
with the SPREAD strategy; each task calls the proxy at its in-stack address with a proxy key and
returns its answer, its usage and where it ran. A second group of tasks uses a key whose request
limit they exceed: they must get 429 with Retry-After, wait what it says, and then be answered.

AGENT_SOURCE is the code each task runs. It is plain Python (httpx only) so that the framework's
own tests can run the very same function outside Ray, against a proxy broken on purpose, and
show that `judge_agents` / `judge_rate_limited` fail.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

AGENT_SOURCE = r'''
import json, time
import httpx

def agent_call(base_url, key, model, prompt, max_tokens=12, give_up_after=150.0):
    """One agent step: ask the proxy; on 429 wait the Retry-After it names, then ask again."""
    attempts, started = [], time.monotonic()
    while True:
        sent = time.monotonic() - started
        try:
            answer = httpx.post(base_url.rstrip("/") + "/chat/completions", timeout=120,
                                headers={"Authorization": "Bearer " + key},
                                json={"model": model, "max_tokens": max_tokens, "temperature": 0,
                                      "messages": [{"role": "user", "content": prompt}]})
            status, text, retry_after = answer.status_code, answer.text, answer.headers.get("retry-after")
        except httpx.HTTPError as error:
            status, text, retry_after = 0, type(error).__name__ + ": " + str(error), None
        attempts.append({"sent": round(sent, 3), "status": status, "retry_after": retry_after})
        if status == 429 and retry_after and time.monotonic() - started < give_up_after:
            time.sleep(float(retry_after))
            continue
        break
    result = {"status": status, "answer": None, "usage": None, "error": None, "attempts": attempts}
    try:
        data = json.loads(text)
        if status == 200:
            result["answer"], result["usage"] = data["choices"][0]["message"]["content"], data.get("usage")
        else:
            result["error"] = text[:300]
    except (ValueError, KeyError, IndexError, TypeError):
        result["error"] = text[:300]
    return result
'''

_DRIVER = r'''
import json, os, socket
import ray

ray.init()
config = json.loads(os.environ["SWARM_AGENTS"])
head = ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=0.25, scheduling_strategy="SPREAD", max_retries=0)
def agent(group, index, url, key, prompt):
    out = agent_call(url, key, config["model"], prompt)
    out.update(group=group, index=index, node=ray.get_runtime_context().get_node_id(), host=socket.gethostname())
    return out

refs = []
for group in config["groups"]:
    for index in range(group["tasks"]):
        prompt = "Agent %d of run %s: name one colour." % (index, config["nonce"])
        refs.append(agent.remote(group["name"], index, group["url"], group["key"], prompt))
workers = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head)
print("SWARM_RESULT " + json.dumps({"head": head, "workers": workers, "results": ray.get(refs, timeout=config["timeout"])}))
'''

Http = Callable[[str, str, Any], tuple[int, Any]]  # (method, path, json body) -> (status, json answer)


def agent_function() -> Callable[..., dict[str, Any]]:
    """AGENT_SOURCE's agent_call, as a function of this process (for the framework's tests)."""
    namespace: dict[str, Any] = {}
    exec(compile(AGENT_SOURCE, "agent_source", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["agent_call"]


def run_job(http: Http, script: str, env: Mapping[str, str], timeout: float) -> dict[str, Any]:
    """Submit `script` as a Ray job, wait for it, return what it printed after SWARM_RESULT."""
    encoded = base64.b64encode(script.encode()).decode()
    entrypoint = f"python -c \"import base64; exec(base64.b64decode('{encoded}').decode())\""
    submission = f"swarm-integration-{uuid.uuid4().hex[:12]}"
    status, answer = http("POST", "/api/jobs/", {"entrypoint": entrypoint, "submission_id": submission,
                                                 "runtime_env": {"env_vars": dict(env)}})
    assert status == 200, f"the Ray head refused the job: HTTP {status} {str(answer)[:200]}"
    state, deadline = "PENDING", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status, answer = http("GET", f"/api/jobs/{submission}", None)
            state = (answer or {}).get("status", state) if status == 200 else state
            if state in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(1.0)
        _, logs = http("GET", f"/api/jobs/{submission}/logs", None)
        text = (logs or {}).get("logs", "") if isinstance(logs, dict) else ""
        assert state == "SUCCEEDED", f"the Ray job ended {state} within {timeout:g} s; its log:\n{text[-2500:]}"
        line = next((l for l in text.splitlines() if l.startswith("SWARM_RESULT ")), None)
        assert line, f"the Ray job printed no result; its log:\n{text[-2500:]}"
        return json.loads(line.removeprefix("SWARM_RESULT "))
    finally:
        if state not in ("SUCCEEDED", "FAILED", "STOPPED"):
            http("POST", f"/api/jobs/{submission}/stop", None)
        http("DELETE", f"/api/jobs/{submission}", None)


def run_agents(http: Http, model: str, groups: Sequence[Mapping[str, Any]], timeout: float = 240.0) -> dict[str, Any]:
    """Fan the groups' agent tasks out over the cluster in one job. Each group: name, url, key, tasks."""
    config = {"model": model, "nonce": uuid.uuid4().hex[:10], "timeout": timeout, "groups": list(groups)}
    return run_job(http, AGENT_SOURCE + _DRIVER, {"SWARM_AGENTS": json.dumps(config)}, timeout + 30)


def judge_agents(results: Sequence[Mapping[str, Any]], expected: int) -> None:
    """Every task answered with content and usage. Names what the failed ones got."""
    assert len(results) == expected, f"{len(results)} of {expected} agent tasks reported back"
    failed = [r for r in results if r.get("status") != 200 or not (r.get("answer") or "").strip()]
    assert not failed, (f"{len(failed)} of {expected} agent tasks got no answer through the proxy: "
                        + "; ".join(f"task {r.get('index')}: HTTP {r.get('status')} {str(r.get('error'))[:160]}" for r in failed[:4]))
    no_usage = [r for r in results if not (r.get("usage") or {}).get("total_tokens")]
    assert not no_usage, f"{len(no_usage)} answers carry no usage (total_tokens): the proxy or engine dropped it"


def worker_spread(results: Sequence[Mapping[str, Any]], head: str) -> set[str]:
    """The distinct worker nodes (not the head) the tasks ran on."""
    return {str(r["node"]) for r in results if r.get("node") and r.get("node") != head}


def judge_rate_limited(results: Sequence[Mapping[str, Any]], rpm: int) -> list[dict[str, Any]]:
    """More tasks than `rpm` on one key: some got 429 with Retry-After, each waited at least
    that long before asking again, and all were answered in the end. The 429s, for the report."""
    refused = [(r, a, b) for r in results for a, b in zip(r.get("attempts", []), r.get("attempts", [])[1:]) if a["status"] == 429]
    last_429 = [a for r in results for a in r.get("attempts", [])[-1:] if a["status"] == 429]
    assert refused or last_429, (f"{len(results)} requests on a key limited to {rpm}/min and no 429: the proxy does "
                                 "not enforce the key's request limit")
    without = [a for r in results for a in r.get("attempts", []) if a["status"] == 429 and not a.get("retry_after")]
    assert not without, f"{len(without)} 429 answers carry no Retry-After header"
    early = [(a, b) for _, a, b in refused if b["sent"] - a["sent"] < float(a["retry_after"]) - 0.5]
    assert not early, f"a task asked again {early[0][1]['sent'] - early[0][0]['sent']:.1f} s after a Retry-After of {early[0][0]['retry_after']}"
    unanswered = [r for r in results if r.get("status") != 200]
    assert not unanswered, (f"{len(unanswered)} rate-limited tasks were never answered after honouring Retry-After: "
                            + "; ".join(f"HTTP {r.get('status')} {str(r.get('error'))[:120]}" for r in unanswered[:3]))
    return [{"retry_after": a["retry_after"], "waited": round(b["sent"] - a["sent"], 1)} for _, a, b in refused]
