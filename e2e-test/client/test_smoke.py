"""Alicia's 12 browser smoke tests, hermetic: every reply is the mock LLM's exact text."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, WebSocket, expect

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def new_conversation(page: Page) -> str:
    # After a (re)load the list is filled asynchronously; count it only once the app says it is ready.
    expect(page.get_by_test_id("app-root")).to_have_attribute("data-ready", "true")
    before = page.get_by_test_id("conversation-item").count()
    page.get_by_test_id("new-conversation-button").click()
    expect(page.get_by_test_id("conversation-item")).to_have_count(before + 1)
    expect(page).to_have_url(re.compile(rf"/c/{UUID}$"))
    return page.url.rsplit("/", 1)[-1]


def send(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send-button").click()


def expect_reply(page: Page, text: str) -> None:
    """Wait until the last assistant message is ``text``; fail as soon as the error banner shows,
    with the banner's text (a failed reply must say why, not wait out the timeout)."""
    page.wait_for_function(
        """(text) => {
            const replies = document.querySelectorAll('[data-testid="message-assistant"]');
            const last = replies[replies.length - 1];
            const banner = document.querySelector('[data-testid="error-banner"]');
            return (last !== undefined && last.textContent.includes(text)) || (banner !== null && !banner.hidden);
        }""",
        arg=text,
    )
    banner = page.get_by_test_id("error-banner")
    assert banner.is_hidden(), f"the assistant reply failed: {banner.text_content()}"
    expect(page.get_by_test_id("message-assistant").last).to_have_text(text)


def test_01_app_loads(page: Page, app_url: str) -> None:
    response = page.goto(app_url)
    assert response is not None and response.status == 200
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"
    expect(page).to_have_title("Alicia")
    assert page.evaluate("window.isSecureContext"), "the app must be a secure context: voice mode needs getUserMedia"
    expect(page.get_by_test_id("app-root")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
    config = page.request.get("/config.json")
    assert config.json() == {"livekitUrl": "ws://server:7880"}
    assert "no-store" in config.headers["cache-control"]
    asset = page.request.get("/assets/app.js")
    assert "immutable" in asset.headers["cache-control"]


def test_02_create_conversation(app: Page) -> None:
    conversation = new_conversation(app)
    item = app.locator(f'[data-testid="conversation-item"][data-id="{conversation}"]')
    expect(item.get_by_test_id("conversation-title")).to_have_text(re.compile(r"^Conversation \d+$"))
    assert app.request.get(f"/api/v1/conversations/{conversation}").ok


def test_03_send_message(app: Page) -> None:
    new_conversation(app)
    send(app, "Hello Alicia")
    expect(app.get_by_test_id("message-user").last).to_have_text("Hello Alicia")
    expect(app.get_by_test_id("message-input")).to_have_value("")


def test_04_receive_ai_reply(app: Page) -> None:
    conversation = new_conversation(app)
    send(app, "What can you do?")
    expect_reply(app, "Mock reply to: What can you do?")
    stored = app.request.get(f"/api/v1/conversations/{conversation}/messages").json()["messages"]
    assert [(m["role"], m["content"], m["completion_status"]) for m in stored] == [
        ("user", "What can you do?", "completed"),
        ("assistant", "Mock reply to: What can you do?", "completed"),
    ]


def test_05_settings(app: Page) -> None:
    app.get_by_test_id("settings-button").click()
    settings = app.get_by_test_id("settings-page")
    expect(settings).to_be_visible()
    expect(app.get_by_test_id("settings-llm-model")).to_have_text("qwen3-8b")
    expect(app.get_by_test_id("settings-voice")).to_have_text("kokoro / af_heart")
    expect(app.get_by_test_id("settings-livekit-url")).to_have_text("ws://server:7880")
    app.get_by_test_id("settings-streaming").check()
    app.get_by_test_id("settings-close").click()
    expect(settings).to_be_hidden()
    app.reload()
    app.get_by_test_id("settings-button").click()
    expect(app.get_by_test_id("settings-streaming")).to_be_checked()
    app.get_by_test_id("settings-streaming").uncheck()


def test_06_voice_mode_activation(app: Page) -> None:
    conversation = new_conversation(app)
    app.get_by_test_id("voice-toggle").click()
    expect(app.get_by_test_id("voice-status")).to_have_text(f"connected to conversation-{conversation}")
    expect(app.get_by_test_id("record-button")).to_be_enabled()
    app.get_by_test_id("voice-toggle").click()
    expect(app.get_by_test_id("voice-status")).to_have_text("voice off")


def test_07_voice_interaction_flow(app: Page) -> None:
    new_conversation(app)
    app.get_by_test_id("voice-toggle").click()
    expect(app.get_by_test_id("record-button")).to_be_enabled()
    app.get_by_test_id("record-button").click()
    expect_reply(app, "Mock reply to: What is the weather like today?")
    expect(app.get_by_test_id("voice-transcript")).to_have_text("What is the weather like today?")
    audio = app.get_by_test_id("voice-reply-audio").get_attribute("src") or ""
    assert audio.startswith("data:audio/wav;base64,UklGR"), "the reply's audio is a RIFF/WAV file"


def test_08_multiple_conversations(app: Page) -> None:
    conversations = []
    for topic in ("apples", "bicycles", "clouds"):
        conversations.append(new_conversation(app))
        send(app, f"Tell me about {topic}")
        expect_reply(app, f"Mock reply to: Tell me about {topic}")
    for conversation, topic in zip(conversations, ("apples", "bicycles", "clouds"), strict=True):
        item = app.locator(f'[data-testid="conversation-item"][data-id="{conversation}"]')
        item.get_by_test_id("conversation-title").click()
        expect(app.get_by_test_id("message-user")).to_have_text([f"Tell me about {topic}"])
        expect(app.get_by_test_id("message-assistant")).to_have_text([f"Mock reply to: Tell me about {topic}"])


def test_09_streaming_over_websocket(app: Page) -> None:
    frames: list[dict[str, object]] = []

    def record(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    app.on("websocket", record)
    app.evaluate("localStorage.setItem('alicia.streaming', 'true')")
    try:
        app.reload()
        new_conversation(app)
        send(app, "Stream this reply word by word")
        expected = "Mock reply to: Stream this reply word by word"
        expect_reply(app, expected)
        deltas = [frame["content"] for frame in frames if frame.get("type") == "delta"]
        assert len(deltas) == len(expected.split(" ")), f"one delta per word, got {deltas}"
        assert "".join(str(d) for d in deltas) == expected
        assert any(frame.get("type") == "done" for frame in frames)
    finally:
        app.remove_listener("websocket", record)
        app.evaluate("localStorage.removeItem('alicia.streaming')")


def test_10_invalid_input_error_handling(app: Page) -> None:
    new_conversation(app)
    app.get_by_test_id("send-button").click()
    expect(app.get_by_test_id("error-banner")).to_have_text("Message must not be empty")
    expect(app.get_by_test_id("message-user")).to_have_count(0)
    bad_id = app.request.post("/api/v1/conversations/not-a-uuid/messages", data={"content": "x"})
    assert bad_id.status == 400 and bad_id.json() == {"error": "invalid conversation id"}
    empty = app.request.post("/api/v1/conversations", data={"title": "   "})
    assert empty.status == 400 and "title" in empty.json()["error"]
    missing = app.request.get("/api/v1/conversations/00000000-0000-0000-0000-000000000000")
    assert missing.status == 404


def test_11_persistence_across_reload(app: Page) -> None:
    conversation = new_conversation(app)
    send(app, "Remember this after a reload")
    expect_reply(app, "Mock reply to: Remember this after a reload")
    app.reload()
    expect(app).to_have_url(re.compile(rf"/c/{conversation}$"))
    expect(app.get_by_test_id("app-root")).to_have_attribute("data-ready", "true")
    expect(app.get_by_test_id("message-user")).to_have_text(["Remember this after a reload"])
    expect(app.get_by_test_id("message-assistant")).to_have_text(["Mock reply to: Remember this after a reload"])


def test_12_cleanup_final_state(app: Page) -> None:
    items = app.get_by_test_id("conversation-item")
    count = items.count()
    assert count > 0, "the earlier tests left conversations to clean up"
    for remaining in range(count, 0, -1):
        items.first.get_by_test_id("delete-conversation-button").click()
        expect(items).to_have_count(remaining - 1)
    assert app.request.get("/api/v1/conversations").json() == {"conversations": []}
    expect(app.get_by_test_id("message-list").locator("li")).to_have_count(0)
