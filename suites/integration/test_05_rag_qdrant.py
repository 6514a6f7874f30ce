"""Flow 5: RAG through Qdrant. The bundled corpus (data/rag_corpus.json: invented facts no model
knows) is embedded (the deployment's /v1/embeddings where it serves one, else the documented
local embedding of integration_rag), upserted into a Qdrant collection of this run with the
official qdrant-client, the top-k passages are retrieved for each question, and the LLM answers
through the proxy with that context: the answer must name the fact. Needs Qdrant deployed.
"""
from __future__ import annotations

import uuid

import pytest

from swarm_checks import Endpoint, Target

from integration_proxy import post_chat
from integration_rag import corpus, deployment_embed, local_embed, mentions, prompt

TOP_K = 2


def test_rag_answer_contains_the_fact(swarm_target: Target, deployed, proxy: Endpoint, model: str) -> None:
    from qdrant_client import QdrantClient, models

    qdrant: Endpoint = swarm_target.endpoint(deployed("qdrant"))
    embed = deployment_embed(proxy.openai_base_url, proxy.api_key, model) or local_embed
    data = corpus()
    documents = data["documents"]
    vectors = embed([d["text"] for d in documents])
    client = QdrantClient(url=qdrant.root_url, api_key=qdrant.api_key, https=False, timeout=30)
    collection = f"swarm_rag_{uuid.uuid4().hex[:10]}"
    try:
        client.create_collection(collection, vectors_config=models.VectorParams(size=len(vectors[0]),
                                                                                distance=models.Distance.COSINE))
        client.upsert(collection, wait=True, points=[
            models.PointStruct(id=d["id"], vector=v, payload={"text": d["text"]}) for d, v in zip(documents, vectors)])
        assert client.count(collection, exact=True).count == len(documents)
        misses = []
        for item in data["questions"]:
            hits = client.query_points(collection, query=embed([item["question"]])[0], limit=TOP_K, with_payload=True).points
            assert hits and hits[0].id == item["document"], (
                f"{item['question']!r}: Qdrant ranked documents {[h.id for h in hits]}, expected {item['document']} first")
            answer = post_chat(proxy.openai_base_url, proxy.api_key, {
                "model": model, "temperature": 0, "max_tokens": 48,
                "messages": prompt(item["question"], [h.payload["text"] for h in hits])})
            assert answer.status_code == 200, f"the LLM did not answer through the proxy: HTTP {answer.status_code}"
            text = answer.json()["choices"][0]["message"]["content"] or ""
            if not mentions(text, item["fact"]):
                misses.append(f"{item['question']!r} -> {text!r} (expected {item['fact']!r})")
        assert not misses, "the answers do not contain the retrieved fact: " + "; ".join(misses)
    finally:
        if client.collection_exists(collection):
            client.delete_collection(collection)


def test_the_local_embedding_ranks_each_question_first() -> None:
    """The documented fallback must be good enough for the flow: checked without any service."""
    from integration_rag import cosine_top

    data = corpus()
    vectors = dict(zip((d["id"] for d in data["documents"]), local_embed([d["text"] for d in data["documents"]])))
    for item in data["questions"]:
        ranked = cosine_top(local_embed([item["question"]])[0], vectors, TOP_K)
        if ranked[0] != item["document"]:
            pytest.fail(f"{item['question']!r}: the local embedding ranks {ranked}, expected {item['document']} first")
