"""The swarm's OpenAI-compatible gateway: auth, routing by model, rate limits, cache, streaming."""
