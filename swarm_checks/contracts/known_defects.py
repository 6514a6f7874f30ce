"""Defects of a deployment that a contract test must not trigger blindly, detected at run time.

A request that kills the engine would take every later test down with it (the container
restarts, on a new host port when ports are random), so such a feature is first checked for its
precondition, inside the engine's container, and reported with its cause and its fix. Where the
precondition holds, or the target cannot run commands (an external stack), the feature is
tested like any other: the detection never hides a defect that it cannot see.
"""
from __future__ import annotations

import unicodedata

from swarm_checks import Target, TargetCapabilityError

# vLLM's sampler ranks logprobs with a torch.compile'd function; torch's inductor backend needs a
# C++ compiler on the CPU, unless dynamo is disabled.
PRECONDITION = ('test "${TORCHDYNAMO_DISABLE:-0}" = 1 && echo swarm:dynamo-disabled; '
                'for c in c++ g++ gcc cc; do command -v "$c" >/dev/null 2>&1 && echo "swarm:compiler:$c"; done; true')


def logprobs_defect(target: Target, engine: str) -> str | None:
    """Why logprobs would crash `engine`, or None when they can be tested."""
    if target.has_gpu():
        return None  # CUDA tensors compile to Triton kernels: no C++ compiler is involved
    try:
        result = target.exec(engine, ["sh", "-c", PRECONDITION])
    except TargetCapabilityError:
        return None
    if result.exit_code != 0 or "swarm:" in result.output:
        return None
    return (f"known defect of {engine}: a logprobs request kills vLLM's CPU engine (EngineCore dies with "
            "InvalidCxxCompiler, the API answers 500, the container restarts). vLLM ranks logprobs with "
            "torch.compile (vllm/v1/sample/ops/logprobs.py), which on the CPU needs a C++ compiler; the image "
            "has none and TORCHDYNAMO_DISABLE is unset. Fix: ENV TORCHDYNAMO_DISABLE=1 in "
            "compose/docker/vllm-cpu/Dockerfile (the engine runs --enforce-eager anyway); logprobs are tested "
            "once the container has it")


def _no_tokens(item: object) -> bool:
    """Text of control characters only: SmolLM2's tokenizer has no token for some of them
    ("\x06", "\x14", ...) and drops them, so such a prompt is empty to the engine."""
    return isinstance(item, str) and item != "" and all(unicodedata.category(char) == "Cc" for char in item)


def streams_an_error_for_an_empty_prompt(body: object) -> bool:
    """vLLM 0.32.0 validates an empty prompt inside a list (`"prompt": ["hi", ""]`), and a prompt
    that tokenizes to nothing (`"\x06"`), only once a stream has begun: it answers 200 with an
    error event instead of a 400. Requests of that form are left out of generated streams and
    the first has a test of its own (suites/contracts)."""
    if not isinstance(body, dict) or not body.get("stream"):
        return False
    prompt = body.get("prompt")
    items = prompt if isinstance(prompt, list) else [prompt]
    return (isinstance(prompt, list) and any(item in ("", []) for item in prompt)) or any(map(_no_tokens, items))
