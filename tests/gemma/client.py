#!/usr/bin/python3
"""client.py - system checks of `kanoa-mlops serve` with a tiny Gemma 3.

Driven by tests/gemma/run.sh, which serves tiny-gemma3.gguf (random Q8_0
weights, synthetic Gemma vocabulary: <start_of_turn> = 105, <end_of_turn> =
106) with --ctx 256 and passes the port. Prints ok/not ok lines and
"N passed, N failed"; loopback only, bounded loops.
"""
import json
import sys

from oai import Client

c = Client(int(sys.argv[1]))
c.check(c.wait_ready(30) == 200, '/health becomes 200 when loaded')

st, m = c.request('GET', '/v1/models')
ids = [(d.get('id'), d.get('task')) for d in m.get('data', [])] if st == 200 else []
c.check(ids == [('tiny-gemma3', 'generate')], '/v1/models lists tiny-gemma3 with task generate', m)

# ---- the Gemma chat template: system text folded into the first user turn ----
msgs = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
st, tok = c.request('POST', '/tokenize', {'messages': msgs, 'add_generation_prompt': True})
toks = tok.get('tokens', []) if st == 200 else []
c.check(toks[:2] == [2, 105] and toks.count(105) == 2 and toks.count(106) == 1,
        'the chat prompt has <bos>, two <start_of_turn> and one <end_of_turn> as single tokens', tok)
st, d = c.request('POST', '/detokenize', {'tokens': toks})
want = '<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n'
c.check(st == 200 and d.get('prompt') == want, 'the chat prompt is the Gemma template', d)

# ---- chat, not streamed and streamed ------------------------------------------
chat = {'model': 'tiny-gemma3', 'messages': msgs, 'max_tokens': 8, 'temperature': 0,
        'ignore_eos': True}
st, r = c.request('POST', '/v1/chat/completions', chat)
ch = (r.get('choices') or [{}])[0] if st == 200 else {}
c.check(st == 200 and ch.get('finish_reason') == 'length' and
        r['usage'] == {'prompt_tokens': len(toks), 'completion_tokens': 8,
                       'total_tokens': len(toks) + 8},
        'chat completion: 8 tokens, usage counts the templated prompt', r)
msg = ch.get('message', {}).get('content')
st, ev = c.stream('/v1/chat/completions', dict(chat, stream=True))
chunks = [e for e in ev if e != '[DONE]']
deltas = ''.join(e['choices'][0]['delta'].get('content', '') for e in chunks if e.get('choices'))
c.check(st == 200 and ev[-1:] == ['[DONE]'] and deltas == msg,
        'streamed chat deltas equal the non-streamed message', (deltas, msg))

# ---- stopping at <end_of_turn> / <eos> ------------------------------------------
# Random weights give <end_of_turn> a small probability at each step; some
# seed among 40 samples an end-of-generation token within 64 tokens.
sampled = {'model': 'tiny-gemma3', 'messages': [{'role': 'user', 'content': 'Hi'}],
           'max_tokens': 64, 'temperature': 1.0}
stopped = None
for seed in range(1, 41):
    st, r = c.request('POST', '/v1/chat/completions', dict(sampled, seed=seed))
    if st == 200 and r['choices'][0]['finish_reason'] == 'stop':
        stopped = (seed, r)
        break
c.check(stopped is not None, 'sampled chat stops on an end-of-turn token for some seed')
if stopped:
    seed, r = stopped
    n, text = r['usage']['completion_tokens'], r['choices'][0]['message']['content']
    c.check(n < 64 and '<end_of_turn>' not in text and '<eos>' not in text,
            'the end-of-turn token ends the message and is not in its text', r)
    st, ev = c.stream('/v1/chat/completions', dict(sampled, seed=seed, stream=True))
    chunks = [e for e in ev if e != '[DONE]' and e.get('choices')]
    deltas = ''.join(e['choices'][0]['delta'].get('content', '') for e in chunks)
    fin = [e['choices'][0].get('finish_reason') for e in chunks if e['choices'][0].get('finish_reason')]
    c.check(deltas == text and fin == ['stop'], 'the stream stops there too, finish_reason stop',
            (deltas, text, fin))
    st, r2 = c.request('POST', '/v1/chat/completions', dict(sampled, seed=seed, ignore_eos=True,
                                                             max_tokens=n + 4))
    more = r2['choices'][0] if st == 200 else {}
    c.check(more.get('finish_reason') == 'length' and r2['usage']['completion_tokens'] == n + 4 and
            more['message']['content'].startswith(text),
            'with ignore_eos the same seed runs past the end-of-turn token', r2)

# ---- which tokens end a turn: forced with logit_bias ------------------------------
# min_tokens 3 holds the end tokens back, so token 400 (pushed up by 50) comes
# three times, then the forced token. <end_of_turn> (106) and <eos> (1) end the
# message (counted in usage, not in the text); <start_of_turn> (105) does not
# (it wins every step and, being special, adds no text).
st, d = c.request('POST', '/detokenize', {'tokens': [400]})
t400 = d.get('prompt', '?') if st == 200 else '?'
forced = {'model': 'tiny-gemma3', 'messages': [{'role': 'user', 'content': 'Hi'}],
          'max_tokens': 6, 'temperature': 0, 'min_tokens': 3}
for tid, name, fin, n, text in ((106, '<end_of_turn>', 'stop', 4, t400 * 3),
                                (1, '<eos>', 'stop', 4, t400 * 3),
                                (105, '<start_of_turn>', 'length', 6, '')):
    st, r = c.request('POST', '/v1/chat/completions',
                      dict(forced, logit_bias={str(tid): 100, '400': 50}))
    ch = (r.get('choices') or [{}])[0] if st == 200 else {}
    c.check(st == 200 and ch.get('finish_reason') == fin and
            r['usage']['completion_tokens'] == n and ch['message']['content'] == text,
            f'forced {name}: finish_reason {fin}, {n} completion tokens, text {text!r}', r)

# ---- image parts --------------------------------------------------------------------
img = {'model': 'tiny-gemma3', 'max_tokens': 4, 'messages': [{'role': 'user', 'content': [
    {'type': 'text', 'text': 'what is this?'},
    {'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,iVBORw0KGgo='}}]}]}
st, e = c.request('POST', '/v1/chat/completions', img)
c.check(st == 400 and 'image' in json.dumps(e), 'an image part -> 400 (text-only model)', e)

sys.exit(c.summary())
