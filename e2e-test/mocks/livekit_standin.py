"""A LiveKit stand-in: validates the access tokens the backend signs, as a LiveKit server would.

``GET /rtc?access_token=JWT`` upgrades to a WebSocket after checking the HS256
signature with the configured key/secret, the issuer (= API key), the time
window and the room-join grant; it answers ``{"type": "joined", "room", "identity"}``
and echoes ``{"type": "ping"}`` frames. A bad token gets HTTP 401 with the
reason. ``GET /_standin/joins`` lists the joins seen.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

from aiohttp import WSMsgType, web

STATE = web.AppKey("state", dict)


class TokenRejected(Exception):
    pass


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def validate(token: str, api_key: str, api_secret: str) -> dict[str, Any]:
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
    except ValueError:
        raise TokenRejected("token is not a JWT") from None
    header = json.loads(_decode(header_b64))
    if header.get("alg") != "HS256":
        raise TokenRejected(f"unsupported algorithm {header.get('alg')!r}")
    expected = hmac.new(api_secret.encode(), f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _decode(signature_b64)):
        raise TokenRejected("bad signature")
    claims: dict[str, Any] = json.loads(_decode(claims_b64))
    now = time.time()
    if claims.get("iss") != api_key:
        raise TokenRejected("issuer is not the configured API key")
    if claims.get("exp", 0) < now or claims.get("nbf", 0) > now + 5:
        raise TokenRejected("token expired or not yet valid")
    grant = claims.get("video", {})
    if not grant.get("roomJoin") or not grant.get("room"):
        raise TokenRejected("no room-join grant")
    return claims


async def rtc(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        claims = validate(request.query.get("access_token", ""), state["api_key"], state["api_secret"])
    except (TokenRejected, ValueError) as problem:
        state["rejections"].append(str(problem))
        return web.json_response({"error": str(problem)}, status=401)
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    join = {"type": "joined", "room": claims["video"]["room"], "identity": claims.get("sub")}
    state["joins"].append({**join, "time": time.time()})
    await socket.send_json(join)
    async for frame in socket:
        if frame.type == WSMsgType.TEXT and json.loads(frame.data).get("type") == "ping":
            await socket.send_json({"type": "pong"})
    return socket


async def joins(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"joins": state["joins"], "rejections": state["rejections"]})


def make_app(api_key: str, api_secret: str) -> web.Application:
    app = web.Application()
    app[STATE] = {"api_key": api_key, "api_secret": api_secret, "joins": [], "rejections": []}
    app.router.add_get("/rtc", rtc)
    app.router.add_get("/_standin/joins", joins)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7880)
    args = parser.parse_args()
    app = make_app(os.environ["ALICIA_LIVEKIT_API_KEY"], os.environ["ALICIA_LIVEKIT_API_SECRET"])
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
