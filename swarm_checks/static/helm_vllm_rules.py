"""Rules for the chart's vLLM Deployments, per device: on an NVIDIA GPU (`vllm.<slot>.device: gpu`,
the default) and on CPUs (`device: cpu`, vLLM's CPU build serving a model baked into its image).

The device a slot should run on is read from the values; what it runs on is judged from the
rendered manifests, so a template that ignores the setting is caught.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from swarm_checks.static.rule import Rule, Violation
from swarm_checks.static.helm_rules import ChartRender, _component, _pods, _v

GPU = "nvidia.com/gpu"
# Seconds the startupProbe must allow before liveness applies: on a GPU the weights are
# downloaded and loaded (minutes); on CPUs the baked-in model loads in 40-120 s.
STARTUP_BUDGET = {"gpu": 600, "cpu": 300}
# Memory the engine itself needs beyond /dev/shm and a CPU KV cache (weights, torch, the server).
ENGINE_MEMORY = 1 << 30
KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def parse_bytes(quantity: Any) -> int | None:
    """A Kubernetes memory quantity in bytes ("5Gi", "512Mi", "1G"); None when unreadable."""
    match = _QUANTITY.match(str(quantity).strip()) if quantity is not None else None
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""]) if match else None


def _quantity(size: int) -> str:
    return f"{size >> 30}Gi" if size % (1 << 30) == 0 else f"{size >> 20}Mi"


def device(render: ChartRender, doc: Mapping[str, Any]) -> str:
    """The device the values ask of the slot that rendered this vLLM Deployment."""
    slot = _component(doc).removeprefix("vllm-")
    return str(render.get(f"vllm.{slot}.device") or "gpu")


def _vllm(render: ChartRender) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], str]]:
    """(workload, pod spec, container, device) of every container of every vLLM Deployment."""
    for doc, spec in _pods(render):
        if _component(doc).startswith("vllm-"):
            for container in spec.get("containers") or []:
                yield doc, spec, container, device(render, doc)


def _shm_volume(spec: Mapping[str, Any], container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The emptyDir mounted at /dev/shm, if it is memory-backed."""
    names = {m.get("name") for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/dev/shm"}
    for volume in spec.get("volumes") or []:
        empty_dir = volume.get("emptyDir")
        if volume.get("name") in names and isinstance(empty_dir, Mapping) and empty_dir.get("medium") == "Memory":
            return empty_dir
    return None


def _env(container: Mapping[str, Any], name: str) -> Any:
    return next((e.get("value") for e in container.get("env") or [] if e.get("name") == name), None)


def check_device(render: ChartRender) -> Iterator[Violation]:
    for doc, _, container, wanted in _vllm(render):
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        name = container.get("name")
        if wanted == "gpu":
            if not limits.get(GPU):
                yield _v(render, doc, "vllm-device", f"GPU mode without an {GPU} limit", name)
            continue
        if GPU in limits or GPU in requests:
            yield _v(render, doc, "vllm-device", f"CPU mode asks for {GPU}: the pod would wait for a GPU node", name)
        gpu_image = str(render.get("vllm.image.repository") or "")
        if gpu_image and str(container.get("image") or "").startswith(f"{gpu_image}:"):
            yield _v(render, doc, "vllm-device", f"CPU mode runs the CUDA image {gpu_image}, not vLLM's CPU build", name)


def check_shm(render: ChartRender) -> Iterator[Violation]:
    for doc, spec, container, _ in _vllm(render):
        shm = _shm_volume(spec, container)
        if shm is None:
            yield _v(render, doc, "vllm-shm", "no memory-backed emptyDir mounted at /dev/shm (vLLM's processes share tensors there)", container.get("name"))
        elif parse_bytes(shm.get("sizeLimit")) is None:
            yield _v(render, doc, "vllm-shm", f"/dev/shm has no readable sizeLimit ({shm.get('sizeLimit')!r}): it could take the node's memory", container.get("name"))


def check_limits(render: ChartRender) -> Iterator[Violation]:
    for doc, spec, container, wanted in _vllm(render):
        limits = (container.get("resources") or {}).get("limits") or {}
        name = container.get("name")
        if wanted == "cpu" and not limits.get("cpu"):
            yield _v(render, doc, "vllm-limits", "CPU mode without a cpu limit", name)
        memory = parse_bytes(limits.get("memory"))
        if memory is None:
            yield _v(render, doc, "vllm-limits", f"no readable memory limit ({limits.get('memory')!r})", name)
            continue
        # A memory-backed /dev/shm and the CPU KV cache are charged to the same memory limit.
        shm = parse_bytes((_shm_volume(spec, container) or {}).get("sizeLimit")) or 0
        needed, parts = shm + ENGINE_MEMORY, f"/dev/shm {_quantity(shm)} + engine {_quantity(ENGINE_MEMORY)}"
        if wanted == "cpu":
            kv_cache = _env(container, KV_CACHE_ENV)
            if not str(kv_cache or "").isdigit() or int(kv_cache) < 1:
                yield _v(render, doc, "vllm-limits", f"CPU mode without {KV_CACHE_ENV} (GiB): vLLM would size its KV cache regardless of the memory limit", name)
                continue
            needed, parts = needed + (int(kv_cache) << 30), f"{parts} + KV cache {kv_cache}Gi"
        if memory < needed:
            yield _v(render, doc, "vllm-limits", f"memory limit {limits.get('memory')} is below {parts}", name)


def max_model_len(container: Mapping[str, Any]) -> str | None:
    """The --max-model-len the engine is started with (`--max-model-len=N` or `--max-model-len N`)."""
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    for index, word in enumerate(words):
        if word.startswith("--max-model-len="):
            return word.split("=", 1)[1]
        if word == "--max-model-len" and index + 1 < len(words):
            return words[index + 1]
    return None


def check_context(render: ChartRender) -> Iterator[Violation]:
    """Without --max-model-len vLLM sizes the context to the model's maximum (128K for Phi-3.5), whose
    KV cache does not fit the GPU (or the CPU KV cache): the engine refuses to start."""
    for doc, _, container, _ in _vllm(render):
        length = max_model_len(container)
        if length is None or not length.isdigit() or int(length) < 1:
            yield _v(render, doc, "vllm-context", f"no positive --max-model-len ({length!r}): vLLM would size the context, and its KV cache, to the model's maximum", container.get("name"))


def check_startup(render: ChartRender) -> Iterator[Violation]:
    for doc, _, container, wanted in _vllm(render):
        startup = container.get("startupProbe")
        needed = STARTUP_BUDGET.get(wanted, max(STARTUP_BUDGET.values()))
        if not startup:
            yield _v(render, doc, "vllm-startup", f"no startupProbe: liveness would restart the engine while it loads ({wanted} mode needs >= {needed}s)", container.get("name"))
            continue
        budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
        if budget < needed:
            yield _v(render, doc, "vllm-startup", f"startupProbe allows {budget}s for model loading ({wanted} mode needs >= {needed}s)", container.get("name"))


def _requests_gpu(spec: Mapping[str, Any]) -> bool:
    return any(GPU in ((c.get("resources") or {}).get(section) or {})
               for c in spec.get("containers") or [] for section in ("requests", "limits"))


def check_gpu_rollout(render: ChartRender) -> Iterator[Violation]:
    """A rolling update surges a second pod before the first goes: on a GPU it waits for a second GPU."""
    for doc, spec in _pods(render):
        if doc.get("kind") != "Deployment" or not _requests_gpu(spec):
            continue
        strategy = (doc.get("spec") or {}).get("strategy") or {}
        kind = strategy.get("type", "RollingUpdate")
        if kind == "Recreate":
            continue
        surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
        if str(surge) not in ("0", "0%"):
            yield _v(render, doc, "gpu-rollout", f"requests {GPU} with strategy {kind} (maxSurge {surge}): a rollout would wait for a second GPU; use Recreate or maxSurge 0")


# The pod-spec fields the scheduling values of a slot map to, and their empty value.
SCHEDULING = {"nodeSelector": {}, "affinity": {}, "tolerations": [], "priorityClassName": "", "runtimeClassName": ""}


def _tolerates_gpu(toleration: Mapping[str, Any]) -> bool:
    key, operator = toleration.get("key"), toleration.get("operator", "Equal")
    return (key == GPU or (key in (None, "") and operator == "Exists")) and toleration.get("effect") in (None, "", "NoSchedule")


def check_scheduling(render: ChartRender) -> Iterator[Violation]:
    """The slot's scheduling values (vllm.<slot>, or vllm.<slot>.cpu in CPU mode) render in the pod spec."""
    for doc, spec in _pods(render):
        if not _component(doc).startswith("vllm-"):
            continue
        slot, wanted = _component(doc).removeprefix("vllm-"), device(render, doc)
        prefix = f"vllm.{slot}.cpu" if wanted == "cpu" else f"vllm.{slot}"
        for field, empty in SCHEDULING.items():
            value = render.get(f"{prefix}.{field}") or empty
            rendered = spec.get(field) or empty
            if rendered != value:
                yield _v(render, doc, "vllm-scheduling", f"{field} renders {rendered!r}, not {prefix}.{field} {value!r}")
        if wanted == "gpu" and not any(_tolerates_gpu(t) for t in spec.get("tolerations") or []):
            yield _v(render, doc, "vllm-scheduling", f"GPU mode without a toleration of the {GPU}:NoSchedule taint GPU nodes carry")


RULES: tuple[Rule[ChartRender], ...] = (
    Rule("vllm-device", "a GPU limit in GPU mode; in CPU mode no GPU and the CPU image", check_device),
    Rule("vllm-shm", "a memory-backed, size-limited /dev/shm", check_shm),
    Rule("vllm-limits", "cpu and memory limits; memory that holds /dev/shm, the KV cache and the engine", check_limits),
    Rule("vllm-context", "a capped context: --max-model-len", check_context),
    Rule("vllm-startup", "a startupProbe long enough for the device's model loading", check_startup),
    Rule("gpu-rollout", "Deployments requesting a GPU roll out with Recreate or maxSurge 0", check_gpu_rollout),
    Rule("vllm-scheduling", "the slot's tolerations, nodeSelector, affinity, priority and runtime classes render", check_scheduling),
)
