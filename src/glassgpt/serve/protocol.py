"""OpenAI's API as glassgpt speaks it: request bodies, response and chunk shapes, error JSON.

Requests are typed pydantic models that refuse unknown fields (a misspelt `max_token` must not
be silently ignored). Types are checked here; ranges that depend on the server's limits are
checked in `app`, with messages naming the limit and the fix. glassgpt's extras, as other
OpenAI-compatible servers name them: `top_k` (0 = off) and `ignore_eos` (keep going past the
end-of-text token; for benchmarks and demos).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr

# ----------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error answered in OpenAI's JSON shape with an HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """pydantic's errors as one line (and the first field's name, OpenAI's `param`)."""
    parts, param = [], None
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        if error.get("type") != "json_invalid":
            param = param or where or None
        if error.get("type") == "extra_forbidden":
            parts.append(f"unknown field '{where}' (glassgpt does not support it: remove it)")
        elif error.get("type") == "missing":
            parts.append(f"'{where}' is required")
        elif error.get("type") == "json_invalid":
            parts.append("the body is not valid JSON: send a JSON object")
        else:
            got = error.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')} (got {shown})")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more, param


# ----------------------------------------------------------------------------- requests


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Request):
    include_usage: StrictBool = False


class _Sampling(_Request):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model: StrictStr
    max_tokens: StrictInt | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: StrictInt = 0
    n: StrictInt = 1
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    ignore_eos: StrictBool = False
    presence_penalty: float = 0.0  # accepted at 0 only: glassgpt has no penalties
    frequency_penalty: float = 0.0
    user: StrictStr | None = None  # accepted and ignored (OpenAI uses it for abuse tracking)

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr] | list[StrictInt]
    logprobs: StrictInt | None = None  # legacy: how many top alternatives per token (0 = only the chosen)
    echo: StrictBool = False  # accepted as false only


class ChatMessage(_Request):
    role: StrictStr
    content: StrictStr | list[dict[str, Any]]
    name: StrictStr | None = None

    def text(self) -> str | None:
        """The content as text: a string, or OpenAI's list of text parts joined; None if not text."""
        if isinstance(self.content, str):
            return self.content
        if all(part.get("type") == "text" and isinstance(part.get("text"), str) for part in self.content):
            return "".join(part["text"] for part in self.content)
        return None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: StrictInt | None = None  # OpenAI's newer name for max_tokens
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = None


# ----------------------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def openai_finish_reason(engine_reason: str) -> Literal["stop", "length"]:
    """The engine's reasons (length, eos, stop_id, stop) in OpenAI's two words."""
    return "length" if engine_reason == "length" else "stop"


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
