// The reference Alicia frontend. Selectors (data-testid) are the contract the e2e tests use:
// see e2e-test/README.md.
"use strict";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const state = { conversations: [], current: null, config: {}, settings: {}, voice: null, socket: null };

function showError(message) {
  const banner = $("error-banner");
  banner.textContent = message;
  banner.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(`/api/v1${path}`, {
    headers: { "Content-Type": "application/json" }, ...options,
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function renderConversations() {
  const list = $("conversation-list");
  list.replaceChildren(...state.conversations.map((conversation) => {
    const item = document.createElement("li");
    item.dataset.testid = "conversation-item";
    item.dataset.id = conversation.id;
    item.className = conversation.id === state.current ? "active" : "";
    const title = document.createElement("span");
    title.dataset.testid = "conversation-title";
    title.textContent = conversation.title;
    title.onclick = () => openConversation(conversation.id);
    const remove = document.createElement("button");
    remove.dataset.testid = "delete-conversation-button";
    remove.textContent = "×";
    remove.title = "Delete";
    remove.onclick = (event) => { event.stopPropagation(); deleteConversation(conversation.id); };
    item.append(title, remove);
    return item;
  }));
}

function addMessage(message) {
  const item = document.createElement("li");
  item.dataset.testid = message.role === "user" ? "message-user" : "message-assistant";
  item.className = message.role;
  item.textContent = message.content;
  $("message-list").append(item);
  return item;
}

async function loadConversations() {
  state.conversations = (await api("/conversations")).conversations;
  renderConversations();
}

async function openConversation(id, push = true) {
  state.current = id;
  const conversation = state.conversations.find((c) => c.id === id);
  $("conversation-heading").textContent = conversation ? conversation.title : "Alicia";
  if (push) history.pushState({}, "", `/c/${id}`);
  $("message-list").replaceChildren();
  const { messages } = await api(`/conversations/${id}/messages`);
  messages.filter((m) => m.completion_status === "completed").forEach(addMessage);
  renderConversations();
}

async function createConversation() {
  const title = `Conversation ${state.conversations.length + 1}`;
  const conversation = await api("/conversations", { method: "POST", body: JSON.stringify({ title }) });
  state.conversations.unshift(conversation);
  await openConversation(conversation.id);
}

async function deleteConversation(id) {
  await api(`/conversations/${id}`, { method: "DELETE" });
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (state.current === id) {
    state.current = null;
    $("message-list").replaceChildren();
    $("conversation-heading").textContent = "Alicia";
    history.pushState({}, "", "/");
  }
  renderConversations();
}

function streamingEnabled() { return localStorage.getItem("alicia.streaming") === "true"; }

function socket() {
  if (state.socket && state.socket.readyState <= 1) return Promise.resolve(state.socket);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => { state.socket = ws; resolve(ws); };
    ws.onerror = () => reject(new Error("WebSocket connection failed"));
  });
}

async function sendStreaming(content) {
  const ws = await socket();
  const indicator = $("stream-indicator");
  let bubble = null;
  await new Promise((resolve) => {
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "user_message") addMessage(frame.message);
      else if (frame.type === "delta") {
        if (!bubble) {
          bubble = addMessage({ role: "assistant", content: "" });
          bubble.dataset.testid = "message-assistant-streaming";
          indicator.hidden = false;
        }
        bubble.textContent += frame.content;
      } else if (frame.type === "done") {
        if (bubble) bubble.dataset.testid = "message-assistant";
        else addMessage(frame.message);
        indicator.hidden = true;
        resolve();
      } else if (frame.type === "error") {
        indicator.hidden = true;
        showError(frame.error);
        resolve();
      }
    };
    ws.send(JSON.stringify({ type: "message", conversation_id: state.current, content }));
  });
}

async function sendMessage(event) {
  event.preventDefault();
  showError("");
  const input = $("message-input");
  const content = input.value.trim();
  if (!content) { showError("Message must not be empty"); return; }
  if (!state.current) await createConversation();
  input.value = "";
  $("send-button").disabled = true;
  try {
    if (streamingEnabled()) {
      await sendStreaming(content);
    } else {
      try {
        const reply = await api(`/conversations/${state.current}/messages`,
          { method: "POST", body: JSON.stringify({ content }) });
        addMessage(reply.user_message);
        addMessage(reply.assistant_message);
      } catch (error) {
        addMessage({ role: "user", content });
        throw error;
      }
    }
  } catch (error) {
    showError(error.message);
  } finally {
    $("send-button").disabled = false;
  }
}

function setVoiceStatus(text) { $("voice-status").textContent = text; }

async function toggleVoice() {
  if (state.voice) {
    state.voice.close();
    state.voice = null;
    $("voice-panel").hidden = true;
    $("record-button").disabled = true;
    setVoiceStatus("voice off");
    return;
  }
  try {
    if (!state.current) await createConversation();
    setVoiceStatus("connecting");
    const grant = await api("/voice/token", { method: "POST", body: JSON.stringify({ conversation_id: state.current }) });
    const url = state.config.livekitUrl || grant.url;
    const ws = new WebSocket(`${url}/rtc?access_token=${encodeURIComponent(grant.token)}`);
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "joined") {
        setVoiceStatus(`connected to ${frame.room}`);
        $("voice-panel").hidden = false;
        $("record-button").disabled = false;
      }
    };
    ws.onclose = () => { if (state.voice === ws) setVoiceStatus("voice error: connection closed"); };
    state.voice = ws;
  } catch (error) {
    setVoiceStatus(`voice error: ${error.message}`);
  }
}

async function recordTurn() {
  const button = $("record-button");
  button.disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream);
    const chunks = [];
    recorder.ondataavailable = (event) => chunks.push(event.data);
    const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    recorder.stop();
    await stopped;
    stream.getTracks().forEach((track) => track.stop());
    const form = new FormData();
    form.append("audio", new Blob(chunks, { type: recorder.mimeType || "audio/webm" }), "turn.webm");
    form.append("conversation_id", state.current);
    const response = await fetch("/api/v1/voice/transcribe", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    $("voice-transcript").textContent = body.transcript;
    addMessage(body.user_message);
    addMessage(body.assistant_message);
    $("voice-reply-audio").src = `data:${body.audio_type};base64,${body.audio}`;
  } catch (error) {
    showError(`voice turn failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

async function openSettings() {
  state.settings = await api("/settings");
  $("settings-llm-model").textContent = state.settings.llm_model;
  $("settings-voice").textContent = `${state.settings.tts_model} / ${state.settings.tts_voice}`;
  $("settings-livekit-url").textContent = state.config.livekitUrl || state.settings.livekit_url;
  $("settings-streaming").checked = streamingEnabled();
  $("settings-page").hidden = false;
}

async function start() {
  $("new-conversation-button").onclick = () => createConversation().catch((e) => showError(e.message));
  $("message-form").onsubmit = sendMessage;
  $("settings-button").onclick = () => openSettings().catch((e) => showError(e.message));
  $("settings-close").onclick = () => { $("settings-page").hidden = true; };
  $("settings-streaming").onchange = (event) => localStorage.setItem("alicia.streaming", String(event.target.checked));
  $("voice-toggle").onclick = toggleVoice;
  $("record-button").onclick = recordTurn;
  window.onpopstate = () => route(false);
  // Both requests at once: each round trip is a visible part of every page load.
  const config = fetch("/config.json").then((response) => response.json()).catch(() => ({}));
  await loadConversations();
  state.config = await config;
  await route(false);
  $("app-root").dataset.ready = "true";
}

async function route(push) {
  const match = location.pathname.match(/^\/c\/([0-9a-f-]{36})$/);
  if (match && state.conversations.some((c) => c.id === match[1])) await openConversation(match[1], push);
}

start().catch((error) => showError(`failed to start: ${error.message}`));
