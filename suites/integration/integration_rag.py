"""Flow 5's machinery: a bundled corpus, a deterministic embedding, retrieval and the prompt.

Embeddings come from the deployment's `/v1/embeddings` where it serves one for the model (the
proxy routes it); where it does not (vLLM serving a chat model answers 4xx), the documented local
embedding is used: feature hashing of lower-cased word unigrams and bigrams into 512 dimensions
(sha256 of the feature picks the dimension and the sign), L2-normalised. It needs no model, is
the same on every machine, and ranks a question's own document first for the bundled corpus,
which is all the flow needs: the point is the path (embed, upsert into Qdrant, retrieve top-k,
answer with the context), not the embedding's quality.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

CORPUS = Path(__file__).parent / "data" / "rag_corpus.json"
DIMENSIONS = 512
Embed = Callable[[Sequence[str]], list[list[float]]]


def corpus() -> dict[str, Any]:
    return json.loads(CORPUS.read_text())


def hashed_embedding(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The local embedding: signed feature hashing of word unigrams and bigrams, L2-normalised."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    vector = [0.0] * dimensions
    for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
        digest = hashlib.sha256(feature.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def local_embed(texts: Sequence[str]) -> list[list[float]]:
    return [hashed_embedding(text) for text in texts]


def deployment_embed(base_url: str, key: str | None, model: str) -> Embed | None:
    """The deployment's embeddings endpoint as an Embed, or None where it serves none for `model`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def embed(texts: Sequence[str]) -> list[list[float]]:
        answer = httpx.post(base_url.rstrip("/") + "/embeddings", json={"model": model, "input": list(texts)},
                            headers=headers, timeout=60)
        answer.raise_for_status()
        return [item["embedding"] for item in sorted(answer.json()["data"], key=lambda item: item["index"])]

    try:
        embed(["probe"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return embed


def cosine_top(query: list[float], vectors: dict[int, list[float]], k: int) -> list[int]:
    """Ids of the k nearest vectors (what Qdrant must agree with), for checks without Qdrant."""
    scored = sorted(vectors, key=lambda i: -sum(a * b for a, b in zip(query, vectors[i])))
    return scored[:k]


def prompt(question: str, passages: Sequence[str]) -> list[dict[str, str]]:
    context = "\n".join(f"- {p}" for p in passages)
    return [{"role": "system", "content": "Answer from the context only, in one short sentence."},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]


def mentions(answer: str, fact: str) -> bool:
    """The answer names the fact (case and punctuation aside)."""
    simplify = lambda s: " ".join(re.findall(r"[a-z0-9]+", s.lower()))  # noqa: E731
    return simplify(fact) in simplify(answer)
