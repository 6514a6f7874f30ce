"""The physical limit of single-stream decoding: every token reads all the weights once, so
time per token >= weight bytes / memory bandwidth. Achieved throughput is reported as a fraction
of that bound (DESIGN.md section 5: Phi-3.5-mini in bf16 on an H100 SXM is at most ~440 tokens/s).
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Any

# Memory bandwidth in GB/s, keyed by a fragment of the name nvidia-smi reports (most specific first).
GPU_BANDWIDTH_GBPS: tuple[tuple[str, float], ...] = (
    ("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100", 1555.0),
    ("L40S", 864.0), ("L40", 864.0), ("L4", 300.0), ("A10G", 600.0), ("A10", 600.0),
    ("RTX 4090", 1008.0), ("RTX 3090", 936.0), ("T4", 320.0), ("V100", 900.0),
)
# Parameters of the models the stack serves, keyed by served name or Hugging Face id.
MODEL_PARAMETERS: dict[str, float] = {
    "phi-3.5-mini": 3.82e9, "microsoft/Phi-3.5-mini-instruct": 3.82e9,
    "qwen2.5-7b-instruct": 7.62e9, "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
    "smollm2-135m": 1.35e8,
}
DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp8": 1, "int8": 1, "int4": 0.5}


def gpu_name() -> str | None:
    """The first GPU's name as the driver reports it, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                            text=True, check=False, timeout=30)
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return names[0] if result.returncode == 0 and names else None


def bandwidth_gbps(name: str) -> float | None:
    for fragment, bandwidth in GPU_BANDWIDTH_GBPS:
        if fragment.lower() in name.lower():
            return bandwidth
    return None


def hardware_class(name: str | None) -> str:
    """`cpu`, or the GPU family in lower case (h100, h200, a100, l4, ...), for threshold keys."""
    if not name:
        return "cpu"
    for fragment, _ in GPU_BANDWIDTH_GBPS:
        if fragment.lower() in name.lower():
            return fragment.split()[0].split("-")[0].lower()
    return "gpu"


def bound(model: str, dtype: str, gpu: str | None) -> dict[str, Any]:
    """The single-stream decode bound in tokens/s, or why it cannot be computed."""
    params = MODEL_PARAMETERS.get(model)
    bandwidth = bandwidth_gbps(gpu) if gpu else None
    if params is None:
        return {"available": False, "reason": f"parameter count of {model!r} unknown (add it to MODEL_PARAMETERS)"}
    if bandwidth is None:
        return {"available": False, "reason": f"memory bandwidth of {gpu or 'this device (no GPU)'} unknown"}
    weight_bytes = params * DTYPE_BYTES.get(dtype, 2)
    return {"available": True, "gpu": gpu, "bandwidth_gbps": bandwidth, "weight_gb": weight_bytes / 1e9,
            "max_tokens_per_s": bandwidth * 1e9 / weight_bytes, "min_ms_per_token": weight_bytes / (bandwidth * 1e9) * 1e3}


def fraction(single_stream_tokens_per_s: float, limit: dict[str, Any]) -> float | None:
    if not limit.get("available"):
        return None
    return single_stream_tokens_per_s / limit["max_tokens_per_s"]
