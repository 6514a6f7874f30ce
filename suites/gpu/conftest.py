"""What the gpu suite needs to know about the engine's hardware, learnt on the engine's side."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from swarm_checks import Endpoint, Target, TargetCapabilityError
from swarm_checks.load import roofline

QUERY = list(roofline.LOCAL_QUERY)  # the same query, asked inside the engine


@dataclass(frozen=True)
class EngineHardware:
    """The GPUs the engine sees and the dtype it loaded, with where each was learnt."""

    gpus: list[roofline.Gpu]
    gpus_from: str
    dtype: str
    dtype_from: str
    tensor_parallel_size: int


@pytest.fixture
def engine_hardware(primary_llm: Endpoint, swarm_target: Target) -> EngineHardware:
    """nvidia-smi inside the engine's container (or pod); where the target cannot run commands
    there (external), the endpoints file's `extra: {gpu: NAME}`. Never the machine running pytest:
    the engine may be elsewhere, see several GPUs, or a MIG slice."""
    extra = primary_llm.extra
    try:
        result = swarm_target.exec(primary_llm.service, QUERY)
        if result.exit_code != 0:
            pytest.fail(f"nvidia-smi inside {primary_llm.service} failed: {result.output.strip()[:300]}")
        gpus, gpus_from = roofline.parse_nvidia_smi(result.output), f"nvidia-smi inside {primary_llm.service}"
    except TargetCapabilityError as error:
        if not extra.get("gpu"):
            pytest.skip(f"{error}: name the engine's GPU in the endpoints file "
                        f"(services: {primary_llm.service}: extra: {{gpu: 'NVIDIA H100 80GB HBM3'}})")
        gpus, gpus_from = roofline.parse_nvidia_smi(extra["gpu"]), "the endpoints file"
    if not gpus:
        pytest.fail(f"no GPU in what {gpus_from} reported")
    dtype = extra.get("dtype")
    return EngineHardware(gpus=gpus, gpus_from=gpus_from, dtype=dtype or "bfloat16",
                          dtype_from="the engine's configuration" if dtype else "assumed (no dtype given: bfloat16)",
                          tensor_parallel_size=int(extra.get("tensor_parallel_size", "1")))
