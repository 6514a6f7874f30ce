"""What the load consists of: prompts and output lengths, fixed or random with a seed.

Input length is counted in words of the prompt material (a proxy for tokens that needs no
tokenizer); the engine's `usage` gives the real token counts, which are what the metrics use.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from swarm_checks.datafiles import PROMPTS as DEFAULT_PROMPTS


@dataclass(frozen=True)
class RequestSpec:
    """One request of the workload: its prompt and the output length it asks for."""

    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class Workload:
    """endpoint: chat or completions. Lengths: fixed, or uniform within +-jitter (a fraction)."""

    endpoint: str = "chat"
    input_words: int = 48
    input_jitter: float = 0.0
    output_tokens: int = 64
    output_jitter: float = 0.0
    prompts_file: Path | None = None
    seed: int = 0
    temperature: float = 0.0
    ignore_eos: bool = False  # vLLM: generate exactly max_tokens (other engines ignore it)
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts_file"] = str(self.prompts_file or DEFAULT_PROMPTS)
        return data

    def requests(self, count: int) -> list[RequestSpec]:
        """`count` requests, the same for the same seed."""
        stream = self.stream()
        return [next(stream) for _ in range(count)]

    def stream(self) -> Iterator[RequestSpec]:
        """An endless, seeded sequence of requests (a run takes what its bounds allow)."""
        rng = random.Random(self.seed)
        lines = [line.strip() for line in (self.prompts_file or DEFAULT_PROMPTS).read_text().splitlines() if line.strip()]
        words = " ".join(lines).split()
        index = 0
        while True:
            n_in = _length(rng, self.input_words, self.input_jitter)
            n_out = _length(rng, self.output_tokens, self.output_jitter)
            lead = lines[index % len(lines)]
            start = rng.randrange(len(words))
            filler = [words[(start + i) % len(words)] for i in range(max(0, n_in - len(lead.split())))]
            prompt = (lead + " Context: " + " ".join(filler)) if filler else " ".join(lead.split()[:n_in])
            yield RequestSpec(prompt=prompt, max_tokens=n_out)
            index += 1

    def body(self, model: str, spec: RequestSpec, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "max_tokens": spec.max_tokens, "temperature": self.temperature,
                                "stream": stream, **self.extra}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            body["ignore_eos"] = True
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": spec.prompt}]
        else:
            body["prompt"] = spec.prompt
        return body

    @property
    def path(self) -> str:
        return "chat/completions" if self.endpoint == "chat" else "completions"


def _length(rng: random.Random, mean: int, jitter: float) -> int:
    if jitter <= 0:
        return max(1, mean)
    return max(1, round(rng.uniform(mean * (1 - jitter), mean * (1 + jitter))))
