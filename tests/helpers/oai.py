"""oai.py - HTTP helpers for the system suites' Python clients (standard
library only, loopback only, bounded timeouts).

  c = Client(port)
  c.check(cond, name, detail)    prints "ok - name" / "not ok - name detail"
  c.request(method, path, body)  -> (status, parsed JSON or text)
  c.stream(path, body)           -> (status, [data events], '[DONE]' kept)
  c.wait_ready(seconds)          polls /health until 200; -> last status
  c.summary()                    prints "N passed, N failed"; -> exit code
"""
import http.client
import json
import time


class Client:
    def __init__(self, port, timeout=60):
        self.port = port
        self.timeout = timeout
        self.passed = 0
        self.failed = 0

    def check(self, cond, name, detail=''):
        if cond:
            self.passed += 1
            print('ok - ' + name)
        else:
            self.failed += 1
            print('not ok - %s %s' % (name, detail))
        return cond

    def _post(self, method, path, body):
        c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=self.timeout)
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data, headers={'Content-Type': 'application/json'})
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, raw.decode('utf-8', 'replace')

    def request(self, method, path, body=None):
        st, text = self._post(method, path, body)
        try:
            return st, json.loads(text)
        except ValueError:
            return st, text

    def stream(self, path, body):
        st, text = self._post('POST', path, body)
        events = []
        for line in text.split('\n'):
            if line.startswith('data: '):
                d = line[6:]
                events.append(d if d == '[DONE]' else json.loads(d))
        return st, events

    def wait_ready(self, seconds=30):
        st = 0
        for _ in range(int(seconds / 0.05)):
            st, _ = self.request('GET', '/health')
            if st == 200:
                break
            time.sleep(0.05)
        return st

    def summary(self):
        print('%d passed, %d failed' % (self.passed, self.failed))
        return 0 if self.failed == 0 else 1
