"""The bandwidth bound from the engine's GPUs as its own nvidia-smi describes them, several GPUs,
MIG slices, tensor parallelism and the dtype the engine loaded; nothing asked of a local
nvidia-smi."""
from __future__ import annotations

import pytest

from swarm_checks.load import roofline
from swarm_checks.load.runner import environment
from swarm_checks.load.roofline import Gpu, bound, bound_for, parse_nvidia_smi

H100 = "NVIDIA H100 80GB HBM3"
PHI_BF16_H100 = 3350e9 / (3.82e9 * 2)


def test_parse_csv_with_and_without_header_and_several_gpus() -> None:
    with_header = f"name, memory.total [MiB]\n{H100}, 81559 MiB\n{H100}, 81559 MiB\n"
    assert parse_nvidia_smi(with_header) == [Gpu(H100, None, pytest.approx(79.6, abs=0.1))] * 2
    assert parse_nvidia_smi("NVIDIA L4\nNVIDIA L4\n") == [Gpu("NVIDIA L4"), Gpu("NVIDIA L4")]
    assert parse_nvidia_smi("") == []


def test_parse_mig_slices_from_the_listing_and_from_names() -> None:
    listing = ("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5b)\n"
               "  MIG 3g.20gb     Device  0: (UUID: MIG-11aa)\n"
               "  MIG 1g.5gb      Device  1: (UUID: MIG-22bb)\n"
               f"GPU 1: {H100} (UUID: GPU-77cc)\n")
    assert parse_nvidia_smi(listing) == [Gpu("NVIDIA A100-SXM4-40GB", "3g.20gb"), Gpu("NVIDIA A100-SXM4-40GB", "1g.5gb"),
                                         Gpu(H100)]
    assert parse_nvidia_smi(f"{H100} MIG 3g.40gb\n") == [Gpu(H100, "3g.40gb")]


def test_bound_takes_the_dtype_the_tensor_parallel_size_and_mig_shares() -> None:
    assert bound("phi-3.5-mini", "bfloat16", H100)["max_tokens_per_s"] == pytest.approx(PHI_BF16_H100)
    assert bound("phi-3.5-mini", "fp8", H100)["max_tokens_per_s"] == pytest.approx(2 * PHI_BF16_H100)
    assert bound("phi-3.5-mini", "float32", H100)["max_tokens_per_s"] == pytest.approx(PHI_BF16_H100 / 2)
    two = bound_for("phi-3.5-mini", "bfloat16", [H100, H100], tensor_parallel_size=2)
    assert two["max_tokens_per_s"] == pytest.approx(2 * PHI_BF16_H100) and two["tensor_parallel_size"] == 2
    assert bound_for("phi-3.5-mini", "bfloat16", [H100, H100])["max_tokens_per_s"] == pytest.approx(PHI_BF16_H100)
    half = bound_for("phi-3.5-mini", "bfloat16", parse_nvidia_smi(f"{H100} MIG 3g.40gb"))
    assert half["max_tokens_per_s"] == pytest.approx(PHI_BF16_H100 / 2)
    assert "MIG 3g.40gb" in half["gpu"]


def test_bound_says_why_it_cannot_be_computed() -> None:
    assert "dtype 'auto'" in bound("phi-3.5-mini", "auto", H100)["reason"]
    assert "tensor-parallel size 2" in bound_for("phi-3.5-mini", "bf16", [H100], 2)["reason"]
    assert "no GPU" in bound("phi-3.5-mini", "bf16", None)["reason"]
    assert "unknown" in bound("phi-3.5-mini", "bf16", "Imaginary GPU 9000")["reason"]
    assert "parameter count" in bound("no-such-model", "bf16", H100)["reason"]


def test_environment_asks_no_local_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("nvidia-smi asked on the machine running the client")

    monkeypatch.setattr(roofline, "gpu_name", forbidden)
    monkeypatch.setattr(roofline.subprocess, "run", forbidden)
    assert environment()["gpu"] is None and environment()["hardware_class"] == "cpu"
    described = environment(H100)
    assert described["gpu"] == H100 and described["hardware_class"] == "h100"
