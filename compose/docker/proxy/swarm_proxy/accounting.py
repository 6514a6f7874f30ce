"""What a request costs: estimates before the answer, the upstream's `usage` after it, and the
server-sent events of a stream, framed so that the usage chunk can be read (and dropped).

Estimates are rough on purpose (no tokenizer: the proxy serves models of several families):
a text is len(characters) / 4 tokens, rounded up, at least 1 for the prompt. They are used
where no `usage` says better: the reservation at admission (prompt + max_tokens, or
PROXY_RESERVE_MAX_TOKENS where max_tokens is absent, times `n`) and the charge of a stream
without a usage chunk (prompt estimate + one token per streamed event). Every charge is
clamped to MAX_CHARGE: an upstream's `total_tokens: 1e30` must neither overflow Redis's 64-bit
counters nor wrap a budget around into "unlimited".
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator

from pydantic import BaseModel

CHARS_PER_TOKEN = 4
MAX_CHARGE = 10_000_000  # tokens one answer may be charged: above any model's context window
EVENT_END = re.compile(rb"\r?\n\r?\n")
SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def clamp(tokens: int) -> int:
    return max(0, min(MAX_CHARGE, tokens))


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _texts(value: Any) -> Iterator[str]:
    """The strings of a prompt, a message's content (a string or a list of parts) or an input."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                yield item["text"]


def prompt_estimate(body: BaseModel) -> int:
    """Tokens of the request's text (messages' contents, `prompt` or `input`): characters / 4, at least 1."""
    texts: list[str] = []
    for message in getattr(body, "messages", None) or []:
        texts.extend(_texts(message.content))
    for field in ("prompt", "input"):
        texts.extend(_texts(getattr(body, field, None)))
    return clamp(max(1, sum(_text_tokens(text) for text in texts)))


def reservation_estimate(body: BaseModel, default_max_tokens: int, prompt: int | None = None) -> int:
    """What admission reserves: the prompt estimate (`prompt`, when made already) plus the most
    the answer may have."""
    prompt = prompt_estimate(body) if prompt is None else prompt
    if not hasattr(body, "max_tokens"):  # embeddings: the prompt is the whole cost
        return prompt
    most = getattr(body, "max_completion_tokens", None) or body.max_tokens or default_max_tokens
    prompts = len(body.prompt) if isinstance(getattr(body, "prompt", None), list) else 1
    return clamp(prompt + most * (getattr(body, "n", None) or 1) * max(1, prompts))


def usage_of(content: bytes) -> dict[str, int]:
    """The whole-number counts of an answer's `usage`; anything else an upstream sends (a string,
    a list, no JSON at all) counts as no usage rather than failing an answer already made."""
    answer = _json(content)
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return {}
    return {str(k): v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def charged(usage: dict[str, int]) -> int | None:
    """The tokens a usage says were spent (total, else prompt + completion), clamped; None without one."""
    if "total_tokens" in usage:
        return clamp(usage["total_tokens"])
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return clamp(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
    return None


def cacheable_answer(content: bytes) -> bool:
    """An answer worth caching: a JSON object with `choices` or `data` and no `error`. An upstream's
    200 with an HTML page, a truncated body or an error object must not be served again for 5 min."""
    answer = _json(content)
    return (isinstance(answer, dict) and answer.get("error") is None
            and isinstance(answer.get("choices", answer.get("data")), list))


def _whole(event: bytes) -> bool:
    """Whether an event's lines are all SSE fields and its data whole JSON (or [DONE])."""
    lines = event.splitlines()
    if not all(line.startswith(SSE_FIELDS) for line in lines):
        return False
    data = b"".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
    return not data or data == b"[DONE]" or _json(data) is not None


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


class EventStream:
    """Frames a stream's bytes into whole SSE events (relayed byte for byte as each completes),
    counts the content events, reads the usage chunk and drops it where the client did not ask
    for one (OpenAI sends it only with stream_options.include_usage)."""

    def __init__(self, keep_usage_chunk: bool) -> None:
        self.keep_usage_chunk = keep_usage_chunk
        self.events = 0
        self.usage: dict[str, int] = {}
        self._buffer = b""
        self.cut = False  # the upstream closed in the middle of an event (its half was dropped)

    def feed(self, chunk: bytes) -> bytes:
        """The whole events `chunk` completes, to send now; a partial event waits for its end."""
        self._buffer += chunk
        if b"\r" in self._buffer:
            return self._feed_any()
        cut = self._buffer.rfind(b"\n\n")
        if cut < 0:
            return b""
        whole, self._buffer = self._buffer[:cut + 2], self._buffer[cut + 2:]
        # The common case, one `data: {...}` line per event: counted without parsing, relayed as
        # it came; only the usage chunk is parsed (and dropped where the client did not ask).
        events = whole.split(b"\n\n")[:-1]
        kept: list[bytes] | None = None
        for index, event in enumerate(events):
            if event.startswith(b"data: ") and b"\n" not in event and b'"usage"' not in event:
                if event[6:].strip() not in (b"", b"[DONE]"):  # as _relay counts
                    self.events += 1
                relayed = True
            else:
                relayed = self._relay(event + b"\n\n")
            if not relayed and kept is None:
                kept = [e + b"\n\n" for e in events[:index]]
            elif relayed and kept is not None:
                kept.append(event + b"\n\n")
        return whole if kept is None else b"".join(kept)

    def _feed_any(self) -> bytes:
        """feed() for streams with CR line ends (SSE allows \\r\\n): event by event."""
        out: list[bytes] = []
        while match := EVENT_END.search(self._buffer):
            event, self._buffer = self._buffer[:match.end()], self._buffer[match.end():]
            if self._relay(event):
                out.append(event)
        return b"".join(out)

    def rest(self) -> bytes:
        """What is left when the upstream closed: a whole event that lacks only its blank line gets
        it; half an event (a line cut off, its data not JSON) is dropped and `cut` set, so that what
        the client gets next (the caller's error event) starts on an event boundary of its own
        instead of being glued onto half a line."""
        rest, self._buffer = self._buffer.strip(b"\r\n"), b""
        if not rest:
            return b""
        if not _whole(rest):
            self.cut = True
            return b""
        event = rest + b"\n\n"
        return event if self._relay(event) else b""

    def _relay(self, event: bytes) -> bool:
        data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            return True
        if b'"usage"' in data:
            parsed = _json(data)
            usage = usage_of(data) if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict) else {}
            if usage:
                self.usage = usage
                if parsed.get("choices") == []:  # the usage chunk: no content of its own
                    return self.keep_usage_chunk
        self.events += 1
        return True
