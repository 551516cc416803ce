// compat.mjs - the official `openai` npm SDK against kanoa-mlops serve (with
// the scripted backend). Usage: node compat.mjs BASE_URL API_KEY
// Prints one line per check and ends with "N passed, N failed".
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [base, key] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 20000 });
let passed = 0, failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const user = (content) => [{ role: 'user', content }];

await check('models.list', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['scripted-chat', 'scripted-embed']);
  assert.equal(page.data[0].object, 'model');
  assert.equal(page.data[0].owned_by, 'kanoa-test');
  assert.equal(page.data[0].created, 1700000000);
  assert.equal(page.data[0].max_model_len, 4096);
});

await check('chat.completions non-streamed', async () => {
  const r = await client.chat.completions.create({ model: 'scripted-chat', messages: user('hi there') });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'Hello, world!');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: 2, total_tokens: 6, completion_tokens: 4 });
});

await check('chat.completions streamed with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'scripted-chat', messages: user('one two three'), stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
  assert.equal(text, 'Hello, world!');
  const withContent = chunks.filter((c) => c.choices.length && c.choices[0].delta.content);
  const last = withContent[withContent.length - 1];
  assert.equal(last.choices[0].delta.content, '!');
  assert.equal(last.choices[0].finish_reason, 'stop');
  const usage = chunks[chunks.length - 1];
  assert.deepEqual(usage.choices, []);
  assert.deepEqual(usage.usage, { prompt_tokens: 3, total_tokens: 7, completion_tokens: 4 });
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
});

await check('chat with image content parts (data: URL), streamed', async () => {
  const stream = await client.chat.completions.create({
    model: 'scripted-chat', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: [
      { type: 'text', text: 'describe this plot' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==' } },
    ] }],
  });
  let text = '', usage = null;
  for await (const c of stream) {
    for (const ch of c.choices) text += ch.delta.content ?? '';
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, 'Hello, world!');
  assert.equal(usage.prompt_tokens, 4);
});

await check('completions non-streamed and streamed', async () => {
  const r = await client.completions.create({ model: 'scripted-chat', prompt: 'a b', max_tokens: 2 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, 'Hello,');
  assert.equal(r.choices[0].finish_reason, 'length');
  const s = await client.completions.create({ model: 'scripted-chat', prompt: 'a', stream: true });
  let text = '', fin = null;
  for await (const c of s) for (const ch of c.choices) { text += ch.text; fin = ch.finish_reason ?? fin; }
  assert.equal(text, 'Hello, world!');
  assert.equal(fin, 'stop');
});

await check('embeddings (SDK default base64 and float)', async () => {
  const r = await client.embeddings.create({ model: 'scripted-embed', input: ['abc', 'de'] });
  assert.equal(r.data.length, 2);
  assert.equal(r.data[1].index, 1);
  const close = (a, b) => a.every((x, i) => Math.abs(x - b[i]) < 1e-6);
  assert.ok(close(r.data[0].embedding, [0.3, 0.4, 0.5, 0.6]), String(r.data[0].embedding));
  const f = await client.embeddings.create({ model: 'scripted-embed', input: 'abcd', encoding_format: 'float', dimensions: 2 });
  assert.ok(close(f.data[0].embedding, [0.4, 0.5]));
  assert.equal(f.usage.prompt_tokens, 1);
});

await check('401 with a wrong key', async () => {
  const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError);
    assert.equal(e.status, 401);
    return true;
  });
});

await check('404 for an unknown model', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: user('x') }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.status, 404);
    assert.equal(e.param, 'model');
    assert.equal(e.error.message, 'The model `nope` does not exist.');
    return true;
  });
});

await check('400 naming the param', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'scripted-chat', messages: user('x'), temperature: -1 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'scripted-chat', messages: user('x'), top_k: 'many' }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, 'top_k');
    return true;
  });
});

await check('X-Request-Id echoed', async () => {
  const { response } = await client.chat.completions
    .create({ model: 'scripted-chat', messages: user('x') }, { headers: { 'X-Request-Id': 'sdk-req-1' } })
    .withResponse();
  assert.equal(response.headers.get('x-request-id'), 'sdk-req-1');
});

await check('aborting a stream cancels it in the backend', async () => {
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'scripted-chat', messages: user('[tokens:200][delay:50]'), stream: true },
    { signal: ac.signal });
  let n = 0;
  try {
    for await (const c of stream) { if (++n === 3) ac.abort(); }
  } catch (e) { /* aborted */ }
  let aborts = 0;
  for (let i = 0; i < 100 && aborts < 1; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const m = await (await fetch(`${base}/metrics`)).text();
    const line = m.split('\n').find((l) => l.startsWith('vllm:request_success_total{engine="0",model_name="scripted-chat",finished_reason="abort"}'));
    aborts = line ? Number(line.split(' ')[1]) : 0;
  }
  assert.equal(aborts, 1);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
