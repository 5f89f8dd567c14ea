"""The wire format of ``garvideo serve``: the OpenAI chat-completion request (plus garvideo's
``extra_body`` fields), OpenAI-style errors, and the reply / stream-chunk bodies.

Only what the OpenAI API defines is read from a request, plus three garvideo fields the official
client sends through ``extra_body``: ``masks``, ``options`` and ``num_frames``. Unknown OpenAI fields
are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApiError",
    "ChatRequest",
    "MaskSpec",
    "chunk_body",
    "completion_body",
    "error_body",
]

# The error "type" OpenAI's API gives for each status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    499: "client_closed_request",
    500: "server_error",
    503: "server_overloaded",
}


@dataclass
class ApiError(Exception):
    """A request the server refuses: answered as ``{"error": {...}}`` with ``status``."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


# ----------------------------------------------------------------------------------------------------
# request
# ----------------------------------------------------------------------------------------------------
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VideoUrl(_Lenient):
    url: str


class ContentPart(_Lenient):
    type: str
    text: str | None = None
    video_url: VideoUrl | None = None


class Message(_Lenient):
    role: str
    content: str | list[ContentPart] | None = None


class MaskSpec(BaseModel):
    """One object on ``frame``: exactly one of ``rle`` (COCO RLE), ``png`` (base64 PNG, or a
    ``data:image/png;base64,`` URL), ``points`` (``[[x, y, label], ...]``), ``box`` (``[x0, y0, x1, y1]``)
    or ``text`` (the object named in words: SAM 3's concept detector on ``frame``; ``pick`` chooses a
    candidate by rank, 0 = best, the default)."""

    model_config = ConfigDict(extra="forbid")

    frame: int = Field(0, ge=0)
    rle: dict[str, Any] | None = None
    png: str | None = None
    points: list[list[float]] | None = None
    box: list[float] | None = None
    text: str | None = None
    pick: int | None = Field(None, ge=0)

    @property
    def kinds(self) -> list[str]:
        return [k for k in ("rle", "png", "points", "box", "text") if getattr(self, k) is not None]


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = None
    # garvideo's fields (the openai client's extra_body)
    masks: list[MaskSpec] | None = None
    options: list[str] | None = None
    num_frames: int | None = Field(None, ge=1)


# ----------------------------------------------------------------------------------------------------
# replies
# ----------------------------------------------------------------------------------------------------
def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(
    rid: str, model: str, text: str, finish: str, usage: dict[str, int], extra: dict[str, Any]
) -> dict[str, Any]:
    """A ``chat.completion`` object with garvideo's ``garvideo`` field."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage,
        "garvideo": extra,
    }


def chunk_body(
    rid: str,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes the usage-only chunk (no choices)."""
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    if extra is not None:
        body["garvideo"] = extra
    return body
