// Alicia's 12 browser smoke tests, hermetic: every reply is the mock LLM's exact text.
// The TypeScript twin of e2e-test/client/test_smoke.py: the same tests under the same names.
import { expect, test, type Page, type WebSocket } from '../fixtures';

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

async function newConversation(page: Page): Promise<string> {
  // After a (re)load the list is filled asynchronously; count it only once the app says it is ready.
  await expect(page.getByTestId('app-root')).toHaveAttribute('data-ready', 'true');
  const before = await page.getByTestId('conversation-item').count();
  await page.getByTestId('new-conversation-button').click();
  await expect(page.getByTestId('conversation-item')).toHaveCount(before + 1);
  await expect(page).toHaveURL(new RegExp(`/c/${UUID}$`));
  return page.url().slice(page.url().lastIndexOf('/') + 1);
}

async function send(page: Page, text: string): Promise<void> {
  await page.getByTestId('message-input').fill(text);
  await page.getByTestId('send-button').click();
}

/** Wait until the last assistant message is `text`; fail as soon as the error banner shows,
 * with the banner's text (a failed reply must say why, not wait out the timeout). */
async function expectReply(page: Page, text: string): Promise<void> {
  await page.waitForFunction((expected) => {
    const replies = document.querySelectorAll('[data-testid="message-assistant"]');
    const last = replies[replies.length - 1];
    const banner = document.querySelector<HTMLElement>('[data-testid="error-banner"]');
    return (last !== undefined && (last.textContent ?? '').includes(expected)) || (banner !== null && !banner.hidden);
  }, text);
  const banner = page.getByTestId('error-banner');
  if (!await banner.isHidden()) throw new Error(`the assistant reply failed: ${await banner.textContent()}`);
  await expect(page.getByTestId('message-assistant').last()).toHaveText(text);
}

test('test_01_app_loads', async ({ page, appUrl }) => {
  const response = await page.goto(appUrl);
  expect(response?.status()).toBe(200);
  const headers = response!.headers();
  expect(headers['x-frame-options']).toBe('SAMEORIGIN');
  expect(headers['x-content-type-options']).toBe('nosniff');
  await expect(page).toHaveTitle('Alicia');
  expect(await page.evaluate(() => window.isSecureContext),
    'the app must be a secure context: voice mode needs getUserMedia').toBe(true);
  await expect(page.getByTestId('app-root')).toHaveAttribute('data-ready', 'true');
  await expect(page.getByTestId('error-banner')).toBeHidden();
  const config = await page.request.get('/config.json');
  expect(await config.json()).toEqual({ livekitUrl: 'ws://server:7880' });
  expect(config.headers()['cache-control']).toContain('no-store');
  const asset = await page.request.get('/assets/app.js');
  expect(asset.headers()['cache-control']).toContain('immutable');
});

test('test_02_create_conversation', async ({ app }) => {
  const conversation = await newConversation(app);
  const item = app.locator(`[data-testid="conversation-item"][data-id="${conversation}"]`);
  await expect(item.getByTestId('conversation-title')).toHaveText(/^Conversation \d+$/);
  expect((await app.request.get(`/api/v1/conversations/${conversation}`)).ok()).toBe(true);
});

test('test_03_send_message', async ({ app }) => {
  await newConversation(app);
  await send(app, 'Hello Alicia');
  await expect(app.getByTestId('message-user').last()).toHaveText('Hello Alicia');
  await expect(app.getByTestId('message-input')).toHaveValue('');
});

test('test_04_receive_ai_reply', async ({ app }) => {
  const conversation = await newConversation(app);
  await send(app, 'What can you do?');
  await expectReply(app, 'Mock reply to: What can you do?');
  const stored = (await (await app.request.get(`/api/v1/conversations/${conversation}/messages`)).json()).messages;
  expect(stored.map((m: Record<string, string>) => [m.role, m.content, m.completion_status])).toEqual([
    ['user', 'What can you do?', 'completed'],
    ['assistant', 'Mock reply to: What can you do?', 'completed'],
  ]);
});

test('test_05_settings', async ({ app }) => {
  await app.getByTestId('settings-button').click();
  const settings = app.getByTestId('settings-page');
  await expect(settings).toBeVisible();
  await expect(app.getByTestId('settings-llm-model')).toHaveText('qwen3-8b');
  await expect(app.getByTestId('settings-voice')).toHaveText('kokoro / af_heart');
  await expect(app.getByTestId('settings-livekit-url')).toHaveText('ws://server:7880');
  await app.getByTestId('settings-streaming').check();
  await app.getByTestId('settings-close').click();
  await expect(settings).toBeHidden();
  await app.reload();
  await app.getByTestId('settings-button').click();
  await expect(app.getByTestId('settings-streaming')).toBeChecked();
  await app.getByTestId('settings-streaming').uncheck();
});

test('test_06_voice_mode_activation', async ({ app }) => {
  const conversation = await newConversation(app);
  await app.getByTestId('voice-toggle').click();
  await expect(app.getByTestId('voice-status')).toHaveText(`connected to conversation-${conversation}`);
  await expect(app.getByTestId('record-button')).toBeEnabled();
  await app.getByTestId('voice-toggle').click();
  await expect(app.getByTestId('voice-status')).toHaveText('voice off');
});

test('test_07_voice_interaction_flow', async ({ app }) => {
  await newConversation(app);
  await app.getByTestId('voice-toggle').click();
  await expect(app.getByTestId('record-button')).toBeEnabled();
  await app.getByTestId('record-button').click();
  await expectReply(app, 'Mock reply to: What is the weather like today?');
  await expect(app.getByTestId('voice-transcript')).toHaveText('What is the weather like today?');
  const audio = (await app.getByTestId('voice-reply-audio').getAttribute('src')) ?? '';
  expect(audio.startsWith('data:audio/wav;base64,UklGR'), "the reply's audio is a RIFF/WAV file").toBe(true);
});

test('test_08_multiple_conversations', async ({ app }) => {
  const topics = ['apples', 'bicycles', 'clouds'];
  const conversations: string[] = [];
  for (const topic of topics) {
    conversations.push(await newConversation(app));
    await send(app, `Tell me about ${topic}`);
    await expectReply(app, `Mock reply to: Tell me about ${topic}`);
  }
  for (const [index, conversation] of conversations.entries()) {
    const item = app.locator(`[data-testid="conversation-item"][data-id="${conversation}"]`);
    await item.getByTestId('conversation-title').click();
    await expect(app.getByTestId('message-user')).toHaveText([`Tell me about ${topics[index]}`]);
    await expect(app.getByTestId('message-assistant')).toHaveText([`Mock reply to: Tell me about ${topics[index]}`]);
  }
});

test('test_09_streaming_over_websocket', async ({ app }) => {
  const frames: Record<string, unknown>[] = [];
  const record = (ws: WebSocket) => {
    ws.on('framereceived', ({ payload }) => frames.push(JSON.parse(payload.toString())));
  };
  app.on('websocket', record);
  await app.evaluate(() => localStorage.setItem('alicia.streaming', 'true'));
  try {
    await app.reload();
    await newConversation(app);
    await send(app, 'Stream this reply word by word');
    const expected = 'Mock reply to: Stream this reply word by word';
    await expectReply(app, expected);
    const deltas = frames.filter((frame) => frame.type === 'delta').map((frame) => String(frame.content));
    expect(deltas.length, `one delta per word, got ${JSON.stringify(deltas)}`).toBe(expected.split(' ').length);
    expect(deltas.join('')).toBe(expected);
    expect(frames.some((frame) => frame.type === 'done')).toBe(true);
  } finally {
    app.off('websocket', record);
    await app.evaluate(() => localStorage.removeItem('alicia.streaming'));
  }
});

test('test_10_invalid_input_error_handling', async ({ app }) => {
  await newConversation(app);
  await app.getByTestId('send-button').click();
  await expect(app.getByTestId('error-banner')).toHaveText('Message must not be empty');
  await expect(app.getByTestId('message-user')).toHaveCount(0);
  const badId = await app.request.post('/api/v1/conversations/not-a-uuid/messages', { data: { content: 'x' } });
  expect(badId.status()).toBe(400);
  expect(await badId.json()).toEqual({ error: 'invalid conversation id' });
  const empty = await app.request.post('/api/v1/conversations', { data: { title: '   ' } });
  expect(empty.status()).toBe(400);
  expect((await empty.json()).error).toContain('title');
  const missing = await app.request.get('/api/v1/conversations/00000000-0000-0000-0000-000000000000');
  expect(missing.status()).toBe(404);
});

test('test_11_persistence_across_reload', async ({ app }) => {
  const conversation = await newConversation(app);
  await send(app, 'Remember this after a reload');
  await expectReply(app, 'Mock reply to: Remember this after a reload');
  await app.reload();
  await expect(app).toHaveURL(new RegExp(`/c/${conversation}$`));
  await expect(app.getByTestId('app-root')).toHaveAttribute('data-ready', 'true');
  await expect(app.getByTestId('message-user')).toHaveText(['Remember this after a reload']);
  await expect(app.getByTestId('message-assistant')).toHaveText(['Mock reply to: Remember this after a reload']);
});

test('test_12_cleanup_final_state', async ({ app }) => {
  const items = app.getByTestId('conversation-item');
  const count = await items.count();
  expect(count, 'the earlier tests left conversations to clean up').toBeGreaterThan(0);
  for (let remaining = count; remaining > 0; remaining--) {
    await items.first().getByTestId('delete-conversation-button').click();
    await expect(items).toHaveCount(remaining - 1);
  }
  expect(await (await app.request.get('/api/v1/conversations')).json()).toEqual({ conversations: [] });
  await expect(app.getByTestId('message-list').locator('li')).toHaveCount(0);
});
