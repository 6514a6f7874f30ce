"""The physical limit of single-stream decoding: every token reads all the weights once, so
time per token >= weight bytes / memory bandwidth. Achieved throughput is reported as a fraction
of that bound (Phi-3.5-mini in bf16 on an H100 SXM at 3.35 TB/s: at most ~440 tokens/s).

The GPU is the engine's, not the machine's running pytest: the caller asks nvidia-smi on the
engine's side (in its container or pod) and passes what it printed to `parse_nvidia_smi`; the
dtype is the one the engine loaded. With tensor parallelism each of the `tp` GPUs reads its share
of the weights at its own bandwidth, so the bound is `tp` times the slowest one's. A MIG slice
gets the share of the GPU's bandwidth that its memory slices are of the whole (3g.40gb on an
80 GB H100: half).
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Sequence

# Memory bandwidth in GB/s and memory in GB, keyed by a fragment of the name nvidia-smi reports
# (most specific first). The memory is what a MIG profile's share is taken of.
GPU_TABLE: tuple[tuple[str, float, float | None], ...] = (
    ("H200", 4800.0, 141.0), ("H100 NVL", 3900.0, 94.0), ("H100 PCIe", 2000.0, 80.0), ("H100", 3350.0, 80.0),
    ("A100-SXM4-80GB", 2039.0, 80.0), ("A100 80GB PCIe", 1935.0, 80.0), ("A100", 1555.0, 40.0), ("A30", 933.0, 24.0),
    ("L40S", 864.0, None), ("L40", 864.0, None), ("L4", 300.0, None), ("A10G", 600.0, None), ("A10", 600.0, None),
    ("RTX 4090", 1008.0, None), ("RTX 3090", 936.0, None), ("T4", 320.0, None), ("V100", 900.0, None),
)
GPU_BANDWIDTH_GBPS: tuple[tuple[str, float], ...] = tuple((fragment, bw) for fragment, bw, _ in GPU_TABLE)
# Parameters of the models the stack serves, keyed by served name or Hugging Face id.
MODEL_PARAMETERS: dict[str, float] = {
    "phi-3.5-mini": 3.82e9, "microsoft/Phi-3.5-mini-instruct": 3.82e9,
    "qwen2.5-7b-instruct": 7.62e9, "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
    "smollm2-135m": 1.35e8,
}
# Bytes per weight, by the names vLLM's --dtype and --quantization use.
DTYPE_BYTES: dict[str, float] = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2, "float32": 4, "float": 4,
                                 "fp32": 4, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1, "int4": 0.5, "awq": 0.5,
                                 "gptq": 0.5}
_MIG = re.compile(r"\bMIG\s+(\d+)g\.(\d+)gb\b", re.IGNORECASE)
_LIST_GPU = re.compile(r"^GPU\s+\d+:\s*(.+?)\s*(?:\(UUID:.*\))?$")


@dataclass(frozen=True)
class Gpu:
    """One device the engine uses: the GPU's name, and its MIG profile when it is a slice."""

    name: str
    mig_profile: str | None = None       # e.g. "3g.40gb"
    memory_gb: float | None = None       # the whole GPU's, when nvidia-smi said

    def describe(self) -> str:
        return f"{self.name} MIG {self.mig_profile}" if self.mig_profile else self.name


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """The devices in what nvidia-smi printed on the engine's side: CSV from
    `--query-gpu=name[,memory.total,...] --format=csv[,noheader]` (one line per GPU), or the
    `nvidia-smi -L` listing, whose MIG lines (`MIG 3g.40gb Device 0: ...`) stand for the slices
    visible there. A name that itself carries `MIG <n>g.<m>gb` is read as that slice."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if any(_LIST_GPU.match(line.strip()) for line in lines):
        return _parse_listing(lines)
    rows = list(csv.reader(lines, skipinitialspace=True))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "name" in header:
        name_at = header.index("name")
        memory_at = next((i for i, h in enumerate(header) if h.startswith("memory.total")), None)
        rows = rows[1:]
    else:
        name_at = 0
        memory_at = 1 if rows and len(rows[0]) > 1 and "mib" in rows[0][1].lower() else None
    gpus = []
    for row in rows:
        if len(row) <= name_at or not row[name_at].strip():
            continue
        memory = _mib_to_gb(row[memory_at]) if memory_at is not None and len(row) > memory_at else None
        gpus.append(_gpu(row[name_at].strip(), memory))
    return gpus


def _parse_listing(lines: list[str]) -> list[Gpu]:
    gpus: list[Gpu] = []
    parent: Gpu | None = None
    sliced = False
    for line in lines:
        found = _LIST_GPU.match(line.strip())
        if found:
            parent, sliced = _gpu(found.group(1)), False
            gpus.append(parent)
            continue
        mig = _MIG.search(line)
        if parent is not None and mig:
            if not sliced:
                gpus.pop()  # a GPU with MIG slices is used through them, not whole
                sliced = True
            gpus.append(Gpu(parent.name, f"{mig.group(1)}g.{mig.group(2)}gb", parent.memory_gb))
    return gpus


def _gpu(name: str, memory_gb: float | None = None) -> Gpu:
    mig = _MIG.search(name)
    if not mig:
        return Gpu(name, None, memory_gb)
    return Gpu(_MIG.sub("", name).strip(" -"), f"{mig.group(1)}g.{mig.group(2)}gb", memory_gb)


def _mib_to_gb(cell: str) -> float | None:
    """nvidia-smi's MiB in the GB of marketing names and MIG profiles (81559 MiB: an "80GB" GPU)."""
    number = re.search(r"[\d.]+", cell)
    return float(number.group()) / 1024 if number else None


LOCAL_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")


def local_gpus() -> list[Gpu]:
    """The GPUs of *this* machine (empty without nvidia-smi or a GPU): the package's one local
    nvidia-smi call. Only right for an engine that runs here; the suites ask the engine's side
    (`parse_nvidia_smi` on what nvidia-smi printed inside its container or pod)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(list(LOCAL_QUERY), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(result.stdout) if result.returncode == 0 else []


def local_driver() -> str | None:
    """The NVIDIA driver version of this machine, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if result.returncode == 0 and lines else None


def gpu_name() -> str | None:
    """The first local GPU's name, or None (see `local_gpus`)."""
    gpus = local_gpus()
    return gpus[0].name if gpus else None


def _entry(name: str) -> tuple[str, float, float | None] | None:
    for entry in GPU_TABLE:
        if entry[0].lower() in name.lower():
            return entry
    return None


def bandwidth_gbps(gpu: str | Gpu) -> float | None:
    """A device's memory bandwidth: the GPU's, or its MIG slice's share of it."""
    device = gpu if isinstance(gpu, Gpu) else _gpu(gpu)
    found = _entry(device.name)
    if found is None:
        return None
    if device.mig_profile is None:
        return found[1]
    total = device.memory_gb or found[2]
    slice_gb = float(device.mig_profile.split(".")[1].rstrip("gb"))
    return found[1] * min(1.0, slice_gb / total) if total else None


def hardware_class(name: str | Gpu | None) -> str:
    """`cpu`, or the GPU family in lower case (h100, h200, a100, l4, ...), for threshold keys."""
    if not name:
        return "cpu"
    found = _entry(name.name if isinstance(name, Gpu) else name)
    return found[0].split()[0].split("-")[0].lower() if found else "gpu"


def bound_for(model: str, dtype: str, gpus: Sequence[str | Gpu], tensor_parallel_size: int = 1) -> dict[str, Any]:
    """The single-stream decode bound in tokens/s for `model` in `dtype` on the first
    `tensor_parallel_size` of `gpus` (names as nvidia-smi reports them, or `parse_nvidia_smi`'s
    devices), or why it cannot be computed."""
    params = MODEL_PARAMETERS.get(model)
    if params is None:
        return {"available": False, "reason": f"parameter count of {model!r} unknown (add it to MODEL_PARAMETERS)"}
    per_weight = DTYPE_BYTES.get(dtype.lower()) if dtype else None
    if per_weight is None:
        return {"available": False, "reason": f"bytes per weight of dtype {dtype!r} unknown: pass the dtype the engine "
                                              f"loaded ({', '.join(sorted(DTYPE_BYTES))})"}
    tp = max(1, int(tensor_parallel_size))
    devices = [g if isinstance(g, Gpu) else _gpu(g) for g in gpus][:tp]
    if not devices:
        return {"available": False, "reason": "memory bandwidth of this device (no GPU) unknown"}
    if len(devices) < tp:
        return {"available": False, "reason": f"tensor-parallel size {tp} but {len(devices)} GPU(s) described"}
    bandwidths = [bandwidth_gbps(device) for device in devices]
    unknown = [d.describe() for d, bw in zip(devices, bandwidths) if bw is None]
    if unknown:
        return {"available": False, "reason": f"memory bandwidth of {', '.join(unknown)} unknown"}
    total_bandwidth = min(bw for bw in bandwidths if bw is not None) * tp
    weight_bytes = params * per_weight
    names = [d.describe() for d in devices]
    return {"available": True, "gpu": names[0] if tp == 1 else ", ".join(names), "gpus": names,
            "tensor_parallel_size": tp, "dtype": dtype, "bandwidth_gbps": total_bandwidth, "weight_gb": weight_bytes / 1e9,
            "max_tokens_per_s": total_bandwidth * 1e9 / weight_bytes,
            "min_ms_per_token": weight_bytes / (total_bandwidth * 1e9) * 1e3}


def bound(model: str, dtype: str, gpu: str | Gpu | Sequence[str | Gpu] | None,
          tensor_parallel_size: int = 1) -> dict[str, Any]:
    """`bound_for` taking one GPU name (the original entry point), a list of them, or None."""
    gpus: Sequence[str | Gpu] = [] if gpu is None else [gpu] if isinstance(gpu, (str, Gpu)) else gpu
    return bound_for(model, dtype, gpus, tensor_parallel_size)


def fraction(single_stream_tokens_per_s: float, limit: dict[str, Any]) -> float | None:
    if not limit.get("available"):
        return None
    return single_stream_tokens_per_s / limit["max_tokens_per_s"]
