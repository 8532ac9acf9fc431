"""The reference Alicia backend: the contract the e2e suite tests, in aiohttp + psycopg.

Configuration comes from the ``ALICIA_*`` variables of seed 000. Endpoints:

- ``GET /health``: ``{"status": "ok", "database": "ok"}`` (503 when the database is unreachable)
- ``/api/v1/conversations`` (GET list, POST create), ``/api/v1/conversations/{id}`` (GET, DELETE)
- ``/api/v1/conversations/{id}/messages`` (GET list, POST: stores the user message, asks the LLM,
  stores and returns the assistant reply; 502 with the LLM's error when it fails)
- ``GET /api/v1/settings``: the non-secret configuration the frontend shows
- ``POST /api/v1/voice/token``: a LiveKit access token (HS256 JWT) for a conversation's room
- ``POST /api/v1/voice/transcribe``: audio -> ASR -> message -> reply (+ TTS audio, base64 WAV)
- ``GET /ws``: WebSocket; ``{"type": "message", "conversation_id", "content"}`` streams the reply
  as ``{"type": "delta"}`` frames, then ``{"type": "done", "message": …}``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import ClientSession, ClientTimeout, FormData, WSMsgType, web
from psycopg.rows import dict_row

log = logging.getLogger("alicia")


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    postgres_url: str
    llm_url: str
    llm_api_key: str
    llm_model: str
    llm_max_tokens: int
    llm_temperature: float
    asr_url: str
    asr_model: str
    tts_url: str
    tts_model: str
    tts_voice: str
    embedding_url: str
    embedding_model: str
    livekit_url: str
    livekit_api_key: str
    livekit_api_secret: str
    static_dir: str

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        llm_url = env.get("ALICIA_LLM_URL", "http://127.0.0.1:9090/v1")
        return cls(
            host=env.get("ALICIA_SERVER_HOST", "127.0.0.1"),
            port=int(env.get("ALICIA_SERVER_PORT", "8888")),
            postgres_url=env["ALICIA_POSTGRES_URL"],
            llm_url=llm_url,
            llm_api_key=env.get("ALICIA_LLM_API_KEY", ""),
            llm_model=env.get("ALICIA_LLM_MODEL", "qwen3-8b"),
            llm_max_tokens=int(env.get("ALICIA_LLM_MAX_TOKENS", "32368")),
            llm_temperature=float(env.get("ALICIA_LLM_TEMPERATURE", "0.1")),
            asr_url=env.get("ALICIA_ASR_URL", llm_url),
            asr_model=env.get("ALICIA_ASR_MODEL", "whisper"),
            tts_url=env.get("ALICIA_TTS_URL", llm_url),
            tts_model=env.get("ALICIA_TTS_MODEL", "kokoro"),
            tts_voice=env.get("ALICIA_TTS_VOICE", "af_heart"),
            embedding_url=env.get("ALICIA_EMBEDDING_URL", llm_url),
            embedding_model=env.get("ALICIA_EMBEDDING_MODEL", "e5-large"),
            livekit_url=env.get("ALICIA_LIVEKIT_URL", "ws://127.0.0.1:7880"),
            livekit_api_key=env.get("ALICIA_LIVEKIT_API_KEY", ""),
            livekit_api_secret=env.get("ALICIA_LIVEKIT_API_SECRET", ""),
            static_dir=env.get("ALICIA_STATIC_DIR", ""),
        )


SETTINGS = web.AppKey("settings", Settings)
HTTP = web.AppKey("http", ClientSession)


class UpstreamError(Exception):
    """An external service (LLM, ASR, TTS, embeddings) answered with an error."""


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


async def connect(settings: Settings) -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(settings.postgres_url, row_factory=dict_row, autocommit=True)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: (value.isoformat() if hasattr(value, "isoformat") else str(value) if isinstance(value, uuid.UUID)
                  else value) for key, value in row.items()}


# -- external services ----------------------------------------------------------------------------

def _auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.llm_api_key}"}


async def llm_messages(conn: psycopg.AsyncConnection[dict[str, Any]], conversation: str) -> list[dict[str, str]]:
    rows = await (await conn.execute(
        "SELECT role, content FROM messages WHERE conversation_id = %s AND completion_status = 'completed' "
        "ORDER BY created_at, sequence", (conversation,))).fetchall()
    return [{"role": "system", "content": "You are Alicia, a helpful voice assistant."},
            *({"role": row["role"], "content": row["content"]} for row in rows)]


async def complete(app: web.Application, messages: list[dict[str, str]]) -> str:
    settings = app[SETTINGS]
    body = {"model": settings.llm_model, "messages": messages, "max_tokens": settings.llm_max_tokens,
            "temperature": settings.llm_temperature}
    async with app[HTTP].post(f"{settings.llm_url}/chat/completions", json=body, headers=_auth(settings)) as reply:
        text = await reply.text()
        if reply.status != 200:
            raise UpstreamError(f"LLM returned HTTP {reply.status}: {text[:300]}")
        return str(json.loads(text)["choices"][0]["message"]["content"])


async def complete_streaming(app: web.Application, messages: list[dict[str, str]]) -> AsyncIterator[str]:
    settings = app[SETTINGS]
    body = {"model": settings.llm_model, "messages": messages, "stream": True,
            "max_tokens": settings.llm_max_tokens, "temperature": settings.llm_temperature}
    async with app[HTTP].post(f"{settings.llm_url}/chat/completions", json=body, headers=_auth(settings)) as reply:
        if reply.status != 200:
            raise UpstreamError(f"LLM returned HTTP {reply.status}: {(await reply.text())[:300]}")
        async for raw in reply.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            payload = line.removeprefix("data:").strip()
            if payload == "[DONE]":
                return
            delta = json.loads(payload)["choices"][0].get("delta", {}).get("content")
            if delta:
                yield delta


async def embed(app: web.Application, text: str) -> list[float]:
    settings = app[SETTINGS]
    body = {"model": settings.embedding_model, "input": text}
    async with app[HTTP].post(f"{settings.embedding_url}/embeddings", json=body, headers=_auth(settings)) as reply:
        if reply.status != 200:
            raise UpstreamError(f"embeddings returned HTTP {reply.status}")
        vector: list[float] = (await reply.json())["data"][0]["embedding"]
        return vector


async def remember(app: web.Application, conn: psycopg.AsyncConnection[dict[str, Any]],
                   conversation: str, text: str) -> None:
    try:
        vector = await embed(app, text)
    except (UpstreamError, OSError) as problem:
        log.warning("memory not stored: %s", problem)
        return
    await conn.execute("INSERT INTO memory (conversation_id, content, embedding) VALUES (%s, %s, %s::vector)",
                       (conversation, text, json.dumps(vector)))


# -- handlers -----------------------------------------------------------------------------------------

async def health(request: web.Request) -> web.Response:
    try:
        async with await connect(request.app[SETTINGS]) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as problem:
        log.error("health: database unreachable: %s", problem)
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def list_conversations(request: web.Request) -> web.Response:
    async with await connect(request.app[SETTINGS]) as conn:
        rows = await (await conn.execute(
            "SELECT id, title, created_at, updated_at FROM conversations ORDER BY updated_at DESC")).fetchall()
    return web.json_response({"conversations": [_row(row) for row in rows]})


async def create_conversation(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "body must be JSON")
    title = body.get("title", "New conversation") if isinstance(body, dict) else None
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        return error(400, "title must be a non-empty string of at most 200 characters")
    async with await connect(request.app[SETTINGS]) as conn:
        row = await (await conn.execute(
            "INSERT INTO conversations (title) VALUES (%s) RETURNING id, title, created_at, updated_at",
            (title.strip(),))).fetchone()
    log.info("conversation created: %s", row["id"] if row else "?")
    return web.json_response(_row(row or {}), status=201)


async def get_conversation(request: web.Request) -> web.Response:
    conversation = _uuid(request.match_info["id"])
    if conversation is None:
        return error(400, "invalid conversation id")
    async with await connect(request.app[SETTINGS]) as conn:
        row = await (await conn.execute(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE id = %s", (conversation,))).fetchone()
    return web.json_response(_row(row)) if row else error(404, "conversation not found")


async def delete_conversation(request: web.Request) -> web.Response:
    conversation = _uuid(request.match_info["id"])
    if conversation is None:
        return error(400, "invalid conversation id")
    async with await connect(request.app[SETTINGS]) as conn:
        result = await conn.execute("DELETE FROM conversations WHERE id = %s", (conversation,))
    return web.Response(status=204) if result.rowcount else error(404, "conversation not found")


async def list_messages(request: web.Request) -> web.Response:
    conversation = _uuid(request.match_info["id"])
    if conversation is None:
        return error(400, "invalid conversation id")
    async with await connect(request.app[SETTINGS]) as conn:
        rows = await (await conn.execute(
            "SELECT id, role, content, completion_status, created_at FROM messages WHERE conversation_id = %s "
            "ORDER BY created_at, sequence", (conversation,))).fetchall()
    return web.json_response({"messages": [_row(row) for row in rows]})


async def _exists(conn: psycopg.AsyncConnection[dict[str, Any]], conversation: str) -> bool:
    return bool(await (await conn.execute("SELECT 1 FROM conversations WHERE id = %s", (conversation,))).fetchone())


async def _store(conn: psycopg.AsyncConnection[dict[str, Any]], conversation: str, role: str, content: str,
                 status: str = "completed", problem: str | None = None) -> dict[str, Any]:
    row = await (await conn.execute(
        "INSERT INTO messages (conversation_id, role, content, completion_status, error) VALUES (%s, %s, %s, %s, %s) "
        "RETURNING id, role, content, completion_status, created_at",
        (conversation, role, content, status, problem))).fetchone()
    await conn.execute("UPDATE conversations SET updated_at = now() WHERE id = %s", (conversation,))
    return _row(row or {})


def _content(body: Any) -> str | None:
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str) or not content.strip() or len(content) > 10_000:
        return None
    return content.strip()


async def post_message(request: web.Request) -> web.Response:
    conversation = _uuid(request.match_info["id"])
    if conversation is None:
        return error(400, "invalid conversation id")
    try:
        content = _content(await request.json())
    except ValueError:
        return error(400, "body must be JSON")
    if content is None:
        return error(400, "content must be a non-empty string of at most 10000 characters")
    async with await connect(request.app[SETTINGS]) as conn:
        if not await _exists(conn, conversation):
            return error(404, "conversation not found")
        user = await _store(conn, conversation, "user", content)
        try:
            reply = await complete(request.app, await llm_messages(conn, conversation))
        except (UpstreamError, OSError) as problem:
            log.error("LLM call failed: %s", problem)
            await _store(conn, conversation, "assistant", "", "failed", str(problem))
            return web.json_response({"error": f"assistant reply failed: {problem}", "user_message": user},
                                     status=502)
        assistant = await _store(conn, conversation, "assistant", reply)
        await remember(request.app, conn, conversation, content)
    return web.json_response({"user_message": user, "assistant_message": assistant}, status=201)


async def settings_view(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response({"llm_model": settings.llm_model, "asr_model": settings.asr_model,
                              "tts_model": settings.tts_model, "tts_voice": settings.tts_voice,
                              "embedding_model": settings.embedding_model, "livekit_url": settings.livekit_url})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def livekit_token(settings: Settings, identity: str, room: str, ttl: int = 600) -> str:
    """A LiveKit access token: HS256 JWT, issuer = API key, with a room-join video grant."""
    header = {"alg": "HS256", "typ": "JWT"}
    now = int(time.time())
    claims = {"iss": settings.livekit_api_key, "sub": identity, "nbf": now - 5, "exp": now + ttl,
              "video": {"room": room, "roomJoin": True, "canPublish": True, "canSubscribe": True}}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(settings.livekit_api_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


async def voice_token(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "body must be JSON")
    conversation = _uuid(str(body.get("conversation_id", ""))) if isinstance(body, dict) else None
    if conversation is None:
        return error(400, "conversation_id is required")
    settings = request.app[SETTINGS]
    token = livekit_token(settings, identity=f"user-{conversation[:8]}", room=f"conversation-{conversation}")
    return web.json_response({"token": token, "url": settings.livekit_url, "room": f"conversation-{conversation}"})


async def transcribe(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    reader = await request.multipart()
    audio, conversation = b"", None
    async for part in reader:
        if part.name == "audio":  # type: ignore[union-attr]
            audio = await part.read()  # type: ignore[union-attr]
        elif part.name == "conversation_id":  # type: ignore[union-attr]
            conversation = _uuid((await part.text()).strip())  # type: ignore[union-attr]
    if not audio or conversation is None:
        return error(400, "audio and conversation_id are required")
    form = FormData()
    form.add_field("file", audio, filename="speech.webm", content_type="audio/webm")
    form.add_field("model", settings.asr_model)
    try:
        async with request.app[HTTP].post(f"{settings.asr_url}/audio/transcriptions", data=form,
                                          headers=_auth(settings)) as reply:
            if reply.status != 200:
                raise UpstreamError(f"ASR returned HTTP {reply.status}")
            text = str((await reply.json())["text"])
        async with await connect(settings) as conn:
            if not await _exists(conn, conversation):
                return error(404, "conversation not found")
            user = await _store(conn, conversation, "user", text)
            answer = await complete(request.app, await llm_messages(conn, conversation))
            assistant = await _store(conn, conversation, "assistant", answer)
        speech = {"model": settings.tts_model, "voice": settings.tts_voice, "input": answer}
        async with request.app[HTTP].post(f"{settings.tts_url}/audio/speech", json=speech,
                                          headers=_auth(settings)) as reply:
            if reply.status != 200:
                raise UpstreamError(f"TTS returned HTTP {reply.status}")
            wav = await reply.read()
    except (UpstreamError, OSError) as problem:
        log.error("voice turn failed: %s", problem)
        return error(502, f"voice turn failed: {problem}")
    return web.json_response({"transcript": text, "user_message": user, "assistant_message": assistant,
                              "audio": base64.b64encode(wav).decode(), "audio_type": "audio/wav"}, status=201)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(heartbeat=30)
    await socket.prepare(request)
    async for frame in socket:
        if frame.type != WSMsgType.TEXT:
            continue
        try:
            event = json.loads(frame.data)
        except ValueError:
            await socket.send_json({"type": "error", "error": "frames must be JSON"})
            continue
        conversation = _uuid(str(event.get("conversation_id", "")))
        content = _content(event)
        if event.get("type") != "message" or conversation is None or content is None:
            await socket.send_json({"type": "error", "error": "expected a message with conversation_id and content"})
            continue
        async with await connect(request.app[SETTINGS]) as conn:
            if not await _exists(conn, conversation):
                await socket.send_json({"type": "error", "error": "conversation not found"})
                continue
            user = await _store(conn, conversation, "user", content)
            await socket.send_json({"type": "user_message", "message": user})
            parts: list[str] = []
            try:
                async for delta in complete_streaming(request.app, await llm_messages(conn, conversation)):
                    parts.append(delta)
                    await socket.send_json({"type": "delta", "content": delta})
            except (UpstreamError, OSError) as problem:
                await _store(conn, conversation, "assistant", "".join(parts), "failed", str(problem))
                await socket.send_json({"type": "error", "error": f"assistant reply failed: {problem}"})
                continue
            assistant = await _store(conn, conversation, "assistant", "".join(parts))
            await socket.send_json({"type": "done", "message": assistant})
    return socket


@web.middleware
async def access_log(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.monotonic()
    response: web.StreamResponse = await handler(request)
    log.info(json.dumps({"method": request.method, "path": request.path, "status": response.status,
                         "ms": round((time.monotonic() - started) * 1000, 1)}))
    return response


async def _client(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = ClientSession(timeout=ClientTimeout(total=60))
    yield
    await app[HTTP].close()


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[access_log], client_max_size=10 * 1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_client)
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/conversations", list_conversations)
    app.router.add_post("/api/v1/conversations", create_conversation)
    app.router.add_get("/api/v1/conversations/{id}", get_conversation)
    app.router.add_delete("/api/v1/conversations/{id}", delete_conversation)
    app.router.add_get("/api/v1/conversations/{id}/messages", list_messages)
    app.router.add_post("/api/v1/conversations/{id}/messages", post_message)
    app.router.add_get("/api/v1/settings", settings_view)
    app.router.add_post("/api/v1/voice/token", voice_token)
    app.router.add_post("/api/v1/voice/transcribe", transcribe)
    app.router.add_get("/ws", websocket)
    if settings.static_dir and os.path.isdir(settings.static_dir):
        app.router.add_static("/", settings.static_dir)
    return app


def serve() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    log.info("alicia reference backend on %s:%s, LLM %s, model %s", settings.host, settings.port,
             settings.llm_url, settings.llm_model)
    web.run_app(make_app(settings), host=settings.host, port=settings.port, print=None)
