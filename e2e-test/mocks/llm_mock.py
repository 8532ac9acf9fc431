"""A deterministic OpenAI-compatible server for hermetic e2e runs.

``/v1/chat/completions`` (plain and SSE), ``/v1/embeddings`` (1024 dimensions,
unit length, derived from the input's hash), ``/v1/audio/transcriptions``,
``/v1/audio/speech`` (a valid WAV), ``/v1/models``. Every request must carry
``Authorization: Bearer <key>``; every request is recorded. Control endpoints:
``GET /_mock/requests``, ``POST /_mock/reset``, ``POST /_mock/config``
(``{"fail_chat": true}`` makes completions answer HTTP 500).

The assistant's reply is ``Mock reply to: <last user message>``, so tests
assert exact text.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import math
import os
import struct
import time
import wave
from typing import Any

from aiohttp import web

DIMENSIONS = 1024
TRANSCRIPT = "What is the weather like today?"
STATE = web.AppKey("state", dict)


def reply_for(messages: list[dict[str, Any]]) -> str:
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"Mock reply to: {last}"


def embedding(text: str) -> list[float]:
    """Deterministic per input, unit length (like e5-large's normalised output)."""
    values: list[float] = []
    counter = 0
    while len(values) < DIMENSIONS:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values += [(byte - 127.5) / 127.5 for byte in digest]
        counter += 1
    values = values[:DIMENSIONS]
    norm = math.sqrt(sum(v * v for v in values))
    return [round(v / norm, 6) for v in values]


def speech_wav(text: str, rate: int = 16000) -> bytes:
    """A short valid WAV: a tone whose length follows the text."""
    seconds = min(3.0, 0.2 + len(text) * 0.01)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
                      for n in range(int(rate * seconds)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


@web.middleware
async def authenticate_and_record(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/_mock/"):
        response: web.StreamResponse = await handler(request)
        return response
    body: Any = None
    if request.content_type == "application/json":
        body = await request.json()
    elif request.content_type.startswith("multipart/"):
        body = {"multipart": True}
    authorized = request.headers.get("Authorization") == f"Bearer {state['api_key']}"
    state["requests"].append({"time": time.time(), "method": request.method, "path": request.path,
                              "authorized": authorized, "body": body})
    if not authorized:
        return web.json_response({"error": {"message": "invalid API key", "type": "invalid_request_error"}},
                                 status=401)
    if body is not None and not request.content_type.startswith("multipart/"):
        request["json"] = body
    response = await handler(request)
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = request.get("json") or {}
    if state["fail_chat"]:
        return web.json_response({"error": {"message": "mock LLM failure (fail_chat)", "type": "server_error"}},
                                 status=500)
    text = reply_for(body.get("messages", []))
    model = body.get("model", "mock")
    if not body.get("stream"):
        return web.json_response({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1},
        })
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    words = text.split(" ")
    for index, word in enumerate(words):
        chunk = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": {"content": word + (" " if index < len(words) - 1 else "")},
                              "finish_reason": None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(state["stream_delay"])
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def embeddings(request: web.Request) -> web.Response:
    body = request.get("json") or {}
    inputs = body.get("input", "")
    texts = inputs if isinstance(inputs, list) else [inputs]
    return web.json_response({"object": "list", "model": body.get("model", "e5-large"),
                              "data": [{"object": "embedding", "index": i, "embedding": embedding(str(t))}
                                       for i, t in enumerate(texts)]})


async def transcriptions(request: web.Request) -> web.Response:
    return web.json_response({"text": TRANSCRIPT})


async def speech(request: web.Request) -> web.Response:
    body = request.get("json") or {}
    return web.Response(body=speech_wav(str(body.get("input", ""))), content_type="audio/wav")


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": name, "object": "model", "owned_by": "vmtest"}
        for name in ("qwen3-8b", "whisper", "kokoro", "e5-large")]})


async def recorded(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE]["requests"])


async def reset(request: web.Request) -> web.Response:
    request.app[STATE]["requests"].clear()
    request.app[STATE]["fail_chat"] = False
    return web.json_response({"ok": True})


async def configure(request: web.Request) -> web.Response:
    changes = await request.json()
    for key in ("fail_chat", "stream_delay"):
        if key in changes:
            request.app[STATE][key] = changes[key]
    return web.json_response({key: request.app[STATE][key] for key in ("fail_chat", "stream_delay")})


def make_app(api_key: str, fail_chat: bool = False) -> web.Application:
    app = web.Application(middlewares=[authenticate_and_record])
    app[STATE] = {"api_key": api_key, "requests": [], "fail_chat": fail_chat, "stream_delay": 0.05}
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_mock/requests", recorded)
    app.router.add_post("/_mock/reset", reset)
    app.router.add_post("/_mock/config", configure)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args()
    api_key = os.environ.get("LLM_MOCK_API_KEY") or os.environ.get("ALICIA_LLM_API_KEY", "")
    web.run_app(make_app(api_key, os.environ.get("LLM_MOCK_FAIL_CHAT") == "1"), host=args.host, port=args.port,
                print=None)


if __name__ == "__main__":
    main()
