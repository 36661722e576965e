"""A minimal OpenAI-compatible chat-completions server for tests: a real model, loopback only.

`POST /v1/chat/completions` renders the chat template, samples `n` continuations with
`sample_shared_prefix` and answers with `choices` and `usage`. It honours `n` (capped by
`max_n`, to exercise clients' top-up path), `max_tokens`, `temperature`, `top_p` and `seed`;
`response_format` is recorded but not enforced. Every request body and Authorization header is
kept in `requests` for assertions. Generation is serialized (one model, small CPU).

    python -m tests.openai_server MODEL_DIR --port 8011     # by hand
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
import uuid


class ModelServer:
    def __init__(self, model_dir: str, max_n: int | None = None, threads: int = 1):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.max_n = max_n
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def _generate(self, body: dict) -> dict:
        from sumpref.backends.prefix_sampling import sample_shared_prefix

        enc = self.tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True)
        ids = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
        n = int(body.get("n", 1))
        if self.max_n is not None:
            n = min(n, self.max_n)
        with self._lock:
            rows = sample_shared_prefix(
                self.model, self.tok, [ids], n, float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)),
                int(body.get("max_tokens") or 16), int(body.get("seed") or 0),
            )[0]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": self.tok.decode(t, skip_special_tokens=True)},
             "finish_reason": fr}
            for i, (t, fr) in enumerate(rows)
        ]
        out_tokens = sum(len(t) + (fr == "stop") for t, fr in rows)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "local"), "choices": choices,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": out_tokens, "total_tokens": len(ids) + out_tokens},
        }

    def app(self):
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request):
            try:
                body = await request.json()
                assert isinstance(body.get("messages"), list)
            except Exception:  # noqa: BLE001 - a bad body is the client's error
                return JSONResponse({"error": {"message": "invalid body"}}, status_code=400)
            self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
            return JSONResponse(await run_in_threadpool(self._generate, body))

        async def models(request):
            return JSONResponse({"object": "list", "data": [{"id": "local", "object": "model"}]})

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


class ServerThread:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; `port` is chosen by the OS."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def main() -> None:
    ap = argparse.ArgumentParser(description="OpenAI-compatible test server (loopback)")
    ap.add_argument("model_dir")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--max-n", type=int, default=None)
    args = ap.parse_args()
    import uvicorn

    uvicorn.run(ModelServer(args.model_dir, args.max_n).app(), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
