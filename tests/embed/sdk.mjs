// sdk.mjs - the official `openai` npm SDK's embeddings.create against a real
// `kanoa-mlops serve` with a bert model (tests/embed/run.sh).
// Usage: node sdk.mjs BASE_URL. Ends with "N passed, N failed".
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [base] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000 });
let passed = 0, failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - sdk ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - sdk ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
let asFloat;

await check('embeddings.create float', async () => {
  const r = await client.embeddings.create({ model: 'bert', input: ['hello world', 'a'], encoding_format: 'float' });
  assert.equal(r.object, 'list');
  assert.equal(r.model, 'bert');
  assert.equal(r.data.length, 2);
  assert.equal(r.data[1].index, 1);
  assert.equal(r.data[0].embedding.length, 128);
  assert.ok(Math.abs(norm(r.data[0].embedding) - 1) < 1e-5);
  assert.deepEqual(r.usage, { prompt_tokens: 7, total_tokens: 7, completion_tokens: 0 });
  asFloat = r.data[0].embedding;
});

await check('embeddings.create base64 (SDK default, decoded by the SDK)', async () => {
  const r = await client.embeddings.create({ model: 'bert', input: 'hello world' });
  assert.equal(r.data[0].embedding.length, 128);
  assert.deepEqual(r.data[0].embedding.map(Math.fround), asFloat.map(Math.fround));
});

await check('embeddings.create token ids', async () => {
  const r = await client.embeddings.create({ model: 'bert', input: [[101, 7592, 2088, 102]], encoding_format: 'float' });
  assert.deepEqual(r.data[0].embedding, asFloat);
});

await check('embeddings.create wrong task is a 400', async () => {
  await assert.rejects(client.embeddings.create({ model: 'llama', input: 'x' }),
    (e) => e.status === 400 && /llama/.test(e.message));
});

console.log(`${passed} passed, ${failed} failed`);
