#!/usr/bin/python3
"""client.py - system checks of `kanoa-mlops serve --model` over HTTP.

Driven by tests/serve/run.sh, which starts the server (models "tiny", a
synthesized Q8_0 Llama served with --served-model-name, and "tiny-f16" named
by its file stem; --ctx 256; a test-only load delay) and passes its port.
Every check prints "ok - ..." or "not ok - ..."; the last line is
"N passed, N failed". Python standard library only; loopback only; every
wait is a bounded loop.
"""
import http.client
import json
import socket
import sys
import time

PORT = int(sys.argv[1])
passed = 0
failed = 0


def check(cond, name, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name)
    else:
        failed += 1
        print('not ok - %s %s' % (name, detail))


def request(method, path, body=None, timeout=60):
    c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=timeout)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, body=data, headers={'Content-Type': 'application/json'})
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw.decode('utf-8', 'replace')


def stream(path, body):
    """POST with stream=true; returns (status, list of parsed data events)."""
    c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=60)
    c.request('POST', path, body=json.dumps(body), headers={'Content-Type': 'application/json'})
    r = c.getresponse()
    events = []
    for line in r.read().decode().split('\n'):
        if line.startswith('data: '):
            d = line[6:]
            events.append(d if d == '[DONE]' else json.loads(d))
    c.close()
    return r.status, events


def metric(name, labels=''):
    st, text = request('GET', '/metrics')
    total = 0.0
    for line in text.split('\n'):
        if line.startswith(name + '{') and labels in line:
            total += float(line.rsplit(' ', 1)[1])
    return total


# ---- loading ---------------------------------------------------------------
st, body = request('GET', '/health')
check(st == 503 and body.get('status') == 'loading', '/health is 503 "loading" while the models load',
      '%s %s' % (st, body))
st, body = request('POST', '/v1/completions', {'model': 'tiny', 'prompt': 'x', 'max_tokens': 1})
check(st == 503 and 'loading' in json.dumps(body), 'a request while loading gets 503 naming the load', body)
for _ in range(600):
    st, body = request('GET', '/health')
    if st == 200:
        break
    time.sleep(0.05)
check(st == 200, '/health becomes 200 when loaded', st)

st, body = request('GET', '/v1/models')
ids = sorted(m['id'] for m in body.get('data', []))
check(ids == ['tiny', 'tiny-f16'], '/v1/models lists --served-model-name and the file stem', ids)

# ---- completions -------------------------------------------------------------
greedy = {'model': 'tiny', 'temperature': 0, 'max_tokens': 12}
st, tok = request('POST', '/tokenize', {'model': 'tiny', 'prompt': 'The quick brown fox'})
prompt_ids = tok.get('tokens', [])
check(st == 200 and len(prompt_ids) == 4, '/tokenize gives the prompt ids', tok)
st, a = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox'))
check(st == 200 and a['choices'][0]['finish_reason'] == 'length', 'completion ends with "length"', a)
check(a.get('usage') == {'prompt_tokens': 4, 'completion_tokens': 12, 'total_tokens': 16},
      'completion usage counts 4 + 12 tokens', a.get('usage'))
text = a['choices'][0]['text']
st, b = request('POST', '/v1/completions', dict(greedy, prompt=prompt_ids))
check(st == 200 and b['choices'][0]['text'] == text, 'a token-id prompt gives the same greedy text',
      (text, b))
st, d = request('POST', '/detokenize', {'model': 'tiny', 'tokens': prompt_ids})
check(st == 200 and d.get('prompt') == 'The quick brown fox', '/detokenize round-trips', d)
# logit_bias: +100 on one token makes greedy decoding repeat it; bad ids are 400s
fox = prompt_ids[3]
st, lb = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox', max_tokens=5,
                                                 logit_bias={str(fox): 100}))
st2, want = request('POST', '/detokenize', {'model': 'tiny', 'tokens': [fox] * 5})
check(st == 200 and lb['choices'][0]['text'] == want.get('prompt'),
      'logit_bias +100 on a token makes greedy output repeat it', (lb, want))
st, lb = request('POST', '/v1/completions', dict(greedy, prompt='x', logit_bias={'99999999': 5}))
check(st == 400 and 'outside the vocabulary' in lb.get('error', {}).get('message', ''),
      'a logit_bias id outside the vocabulary is a 400', (st, lb))
st, lb = request('POST', '/v1/completions', dict(greedy, prompt='x', logit_bias={'fox': 5}))
check(st == 400 and lb.get('error', {}).get('param') == 'logit_bias',
      'a logit_bias key that is not a token id is a 400', (st, lb))
st, e = request('POST', '/tokenize', {'prompt': 'The quick brown fox'})
check(st == 400 and 'several models' in e.get('error', {}).get('message', ''),
      '/tokenize without a model on a two-model server is a 400', (st, e))

st, events = stream('/v1/completions', dict(greedy, prompt='The quick brown fox', stream=True,
                                            stream_options={'include_usage': True}))
chunks = [e for e in events if e != '[DONE]']
joined = ''.join(c['choices'][0]['text'] for c in chunks if c.get('choices'))
check(st == 200 and joined == text and events[-1] == '[DONE]',
      'streamed completion text equals the non-streamed text', (joined, text))
check(chunks[-1].get('usage', {}).get('completion_tokens') == 12, 'streamed usage chunk', chunks[-1])

# ---- seeds, n ----------------------------------------------------------------------
sampled = {'model': 'tiny', 'prompt': 'Once upon a time', 'max_tokens': 10, 'temperature': 1.0,
           'seed': 42}
st, s1 = request('POST', '/v1/completions', sampled)
st, s2 = request('POST', '/v1/completions', sampled)
check(s1['choices'][0]['text'] == s2['choices'][0]['text'], 'same seed and request -> same output')
st, s3 = request('POST', '/v1/completions', dict(sampled, seed=43))
st, s4 = request('POST', '/v1/completions', dict(sampled, seed=44))
check(len({s1['choices'][0]['text'], s3['choices'][0]['text'], s4['choices'][0]['text']}) > 1,
      'other seeds -> other outputs')
st, nn = request('POST', '/v1/completions', dict(sampled, n=2))
check(st == 200 and [c['index'] for c in nn['choices']] == [0, 1] and
      nn['usage']['completion_tokens'] == 20, 'n=2 gives two choices and counts both', nn)

# ---- logprobs ----------------------------------------------------------------------
st, lp = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox', logprobs=3))
L = lp['choices'][0].get('logprobs') or {}
ok = (st == 200 and len(L.get('tokens', [])) == 12 and len(L.get('token_logprobs', [])) == 12 and
      len(L.get('top_logprobs', [])) == 12 and ''.join(L['tokens']) == text)
check(ok, 'completions logprobs: tokens / token_logprobs / top_logprobs per token', L)
if ok:
    good = all(isinstance(t, dict) and 1 <= len(t) <= 3 for t in L['top_logprobs'])
    good = good and all(abs(max(t.values()) - l) < 1e-5 for t, l in zip(L['top_logprobs'], L['token_logprobs']))
    check(good, 'greedy token logprob is the best of top_logprobs ({token: logprob})', L['top_logprobs'][:2])
    check(all(l <= 0 for l in L['token_logprobs']), 'logprobs are <= 0')
    offs, at = [], 0
    for t in L['tokens']:
        offs.append(at)
        at += len(t)
    check(L.get('text_offset') == offs, 'text_offset: where each token starts in the text',
          (L.get('text_offset'), offs))
st, e = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox', logprobs=1,
                                                 echo=True, max_tokens=3))
E = (e.get('choices') or [{}])[0].get('logprobs') or {}
check(st == 200 and E.get('text_offset', [None])[0] == len('The quick brown fox'),
      'text_offset counts the echoed prompt', E)
chat = {'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Hello there'}],
        'temperature': 0, 'max_tokens': 6}
st, c = request('POST', '/v1/chat/completions', dict(chat, logprobs=True, top_logprobs=2))
content = ((c.get('choices') or [{}])[0].get('logprobs') or {}).get('content') or []
check(st == 200 and len(content) == 6 and all(len(e['top_logprobs']) == 2 and 'bytes' in e for e in content),
      'chat logprobs: content[].top_logprobs with 2 entries', c)
check(content and abs(content[0]['top_logprobs'][0]['logprob'] - content[0]['logprob']) < 1e-5,
      'chat greedy logprob equals the best alternative', content[:1])

# ---- chat, streamed and not --------------------------------------------------------
st, c1 = request('POST', '/v1/chat/completions', chat)
msg = c1['choices'][0]['message']['content']
check(st == 200 and c1['choices'][0]['message']['role'] == 'assistant' and c1['usage']['completion_tokens'] == 6,
      'chat completion with usage', c1)
st, events = stream('/v1/chat/completions', dict(chat, stream=True, stream_options={'include_usage': True}))
chunks = [e for e in events if e != '[DONE]']
deltas = ''.join(ch['choices'][0]['delta'].get('content', '') for ch in chunks if ch.get('choices'))
check(deltas == msg, 'streamed chat deltas equal the non-streamed message', (deltas, msg))
check(chunks[-1].get('usage', {}).get('total_tokens') == c1['usage']['total_tokens'],
      'streamed chat usage equals the non-streamed usage', chunks[-1])

# ---- stop strings ------------------------------------------------------------------
if len(text) > 6:
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = text[:text.index(stop)]
    st, s = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox', stop=[stop]))
    check(s['choices'][0]['text'] == cut and s['choices'][0]['finish_reason'] == 'stop',
          'stop string cuts the text before it (non-streamed)', (stop, s['choices'][0]))
    st, events = stream('/v1/completions', dict(greedy, prompt='The quick brown fox', stop=[stop], stream=True))
    joined = ''.join(e['choices'][0]['text'] for e in events if e != '[DONE]' and e.get('choices'))
    check(joined == cut, 'stop string never leaks into the stream', (stop, joined))
else:
    check(False, 'greedy text long enough to pick a stop string', text)

# ---- errors --------------------------------------------------------------------------
st, e = request('POST', '/v1/completions', dict(greedy, prompt='The quick brown fox', max_tokens=253))
m = json.dumps(e)
check(st == 400 and '256' in m and '257' in m and '4 in the prompt' in m and '253 in the completion' in m,
      'prompt + max_tokens over the context -> 400 naming the numbers', e)
img = {'model': 'tiny', 'max_tokens': 4, 'messages': [{'role': 'user', 'content': [
    {'type': 'text', 'text': 'what is this?'},
    {'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,iVBORw0KGgo='}}]}]}
st, e = request('POST', '/v1/chat/completions', img)
check(st == 400 and 'image' in json.dumps(e) and 'text-only' in json.dumps(e), 'image content -> 400 saying so', e)
st, e = request('POST', '/v1/completions', dict(greedy, prompt=[0, 99999999]))
check(st == 400, 'an out-of-vocabulary prompt id -> 400', e)

# ---- concurrency: all served, interleaved --------------------------------------------
socks = []
for i in range(3):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=60)
    body = json.dumps({'model': 'tiny', 'prompt': 'Request %d' % i, 'max_tokens': 120,
                       'temperature': 0, 'ignore_eos': True, 'stream': True})
    s.sendall(('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
               'Content-Length: %d\r\nConnection: close\r\n\r\n%s' % (len(body), body)).encode())
    socks.append(s)
order = []   # (stream index, 'first' | 'done') in arrival order
bufs = [b''] * 3
open_ = set(range(3))
deadline = time.monotonic() + 120
while open_ and time.monotonic() < deadline:
    for i in list(open_):
        socks[i].settimeout(0.01)
        try:
            chunk = socks[i].recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            open_.discard(i)
            continue
        if b'"text"' in chunk and b'"text"' not in bufs[i]:
            order.append((i, 'first'))
        bufs[i] += chunk
        if b'[DONE]' in bufs[i] and (i, 'done') not in order:
            order.append((i, 'done'))
for s in socks:
    s.close()
dones = [k for k, (i, ev) in enumerate(order) if ev == 'done']
firsts = [k for k, (i, ev) in enumerate(order) if ev == 'first']
check(len(dones) == 3, 'three concurrent streams all complete', order)
check(len(firsts) == 3 and dones and max(firsts) < min(dones),
      'every stream got its first token before any finished (fair interleaving)', order)

# ---- cancellation on disconnect ------------------------------------------------------
gen_before = metric('vllm:generation_tokens_total')
abort_before = metric('vllm:request_success_total', 'finished_reason="abort"')
s = socket.create_connection(('127.0.0.1', PORT), timeout=60)
body = json.dumps({'model': 'tiny', 'prompt': 'Go on and on', 'max_tokens': 240, 'temperature': 0,
                   'ignore_eos': True, 'stream': True})
s.sendall(('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
           'Content-Length: %d\r\n\r\n%s' % (len(body), body)).encode())
got = b''
while b'"text"' not in got:
    got += s.recv(4096)
s.close()
for _ in range(400):
    if metric('vllm:request_success_total', 'finished_reason="abort"') > abort_before:
        break
    time.sleep(0.05)
aborted = metric('vllm:request_success_total', 'finished_reason="abort"') - abort_before
generated = metric('vllm:generation_tokens_total') - gen_before
check(aborted == 1, 'a client disconnect ends the request with "abort"', aborted)
check(generated < 240, 'the engine stopped early (%d of 240 tokens)' % generated, generated)

st, h = request('GET', '/metrics')
check('vllm:kv_cache_usage_perc' in h and 'vllm:time_to_first_token_seconds_bucket' in h,
      '/metrics has the KV gauge and TTFT histogram')

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
