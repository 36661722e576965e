"""A fault-injecting HTTP proxy on 127.0.0.1 for the OpenAI backend's tests.

Faults are chosen per prompt, from a tag in the last message: `[faults:429,500,drop]` means the
1st attempt of that prompt gets a 429, the 2nd a 500, the 3rd a dropped connection, and later
attempts go through to the upstream server. `always503` fails every attempt. Kinds: an HTTP
status (`429` carries `Retry-After`), `timeout` (hold the connection past the client's timeout,
then close), `malformed` (200 with a truncated JSON body), `drop` (close without answering).
Per prompt, `attempts`, `passed` (forwarded and answered) and `log` (fault, monotonic time) are
kept for assertions. One request per connection (`Connection: close`).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter, defaultdict

TAG = re.compile(r"\[faults:([^\]]*)\]")
REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


def _response(status: int, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class FaultProxy:
    def __init__(self, upstream_port: int, hold_s: float, retry_after: str = "1"):
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.hold_s = hold_s
        self.retry_after = retry_after
        self.attempts: Counter = Counter()
        self.passed: Counter = Counter()
        self.log: dict[str, list[tuple[str, float]]] = defaultdict(list)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def key_of(body: dict) -> str:
        return str(body["messages"][-1]["content"])

    def _fault(self, key: str) -> str:
        m = TAG.search(key)
        plan = [f.strip() for f in m.group(1).split(",")] if m else []
        k = self.attempts[key]
        self.attempts[key] += 1
        if "always503" in plan:
            return "503"
        return plan[k] if k < len(plan) else "pass"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            key = self.key_of(json.loads(body))
            fault = self._fault(key)
            self.log[key].append((fault, time.monotonic()))
            if fault == "drop":
                writer.transport.abort()
                return
            if fault == "timeout":
                await asyncio.sleep(self.hold_s)
                writer.transport.abort()
                return
            if fault == "malformed":
                writer.write(_response(200, b'{"id": "x", "choices": [{"index": 0, "mess'))
            elif fault != "pass":
                extra = {"Retry-After": self.retry_after} if fault == "429" else None
                writer.write(_response(int(fault), b'{"error": {"message": "injected"}}', extra))
            else:
                status, payload = await self._forward(method, path, headers, body)
                if status == 200:
                    self.passed[key] += 1
                writer.write(_response(status, payload))
            await writer.drain()
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.transport.abort()

    async def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        import httpx

        keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as client:
            r = await client.request(method, path, content=body, headers=keep)
            return r.status_code, r.content
