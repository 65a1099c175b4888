"""A real local OpenAI-compatible HTTP server for tests and benchmarks.

`with LLMServer(responder) as server:` serves /v1/models, /v1/completions and
/v1/chat/completions on 127.0.0.1 (a free port) from a thread, answering each
request from `responder(prompt, params) -> list[str]` (params: the request's
sampling fields). Faults are injected by setting attributes while it runs:

    server.fail_next(2, status=429, retry_after=0)   # the next 2 requests fail
    server.delay_seconds = 1.0                       # every answer waits 1 s
    server.reject_with(400, "prompt too long")       # answer 400 with an error body
    server.max_choices = 1                           # ignore `n` like some servers

and it counts what it saw: `requests` (path, JSON body, headers), `served`,
`max_in_flight`. `python -m tests.llm_server` runs one in the foreground
(prints its base URL) for benchmarks that want the server in another process.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[str, dict[str, Any]], list[str]]


def echo_responder(prompt: str, params: dict[str, Any]) -> list[str]:
    """Distinct, checkable texts: sample i of prompt p is 'p#i'."""
    return [f"{prompt}#{i}" for i in range(int(params.get("n", 1)))]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: float | None
    message: str


@dataclass
class LLMServer:
    responder: Responder = echo_responder
    models: tuple[str, ...] = ("test-model",)
    delay_seconds: float = 0.0
    # Return at most this many choices whatever `n` asks (servers that ignore n).
    max_choices: int | None = None
    requests: list[Recorded] = field(default_factory=list)
    served: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _faults: list[_Fault] = field(default_factory=list)
    _reject: tuple[int, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- fault injection -----------------------------------------------------------

    def fail_next(
        self, count: int, status: int = 500, retry_after: float | None = None, message: str = "injected"
    ) -> None:
        """The next `count` generation requests answer `status` (with Retry-After if given)."""
        with self._lock:
            self._faults.append(_Fault(count, status, retry_after, message))

    def reject_with(self, status: int, message: str) -> None:
        """Every generation request answers `status` with an OpenAI error body until cleared."""
        with self._lock:
            self._reject = (status, message)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._reject = None
        self.delay_seconds = 0.0

    # --- lifecycle -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LLMServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True  # a delayed answer never blocks shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed answers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) --------------------------------

    def _enter(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(Recorded(path, body, headers))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.served += 1

    def _take_fault(self) -> tuple[int, str, float | None] | None:
        with self._lock:
            if self._reject is not None:
                return self._reject[0], self._reject[1], None
            while self._faults and self._faults[0].remaining <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            return fault.status, fault.message, fault.retry_after

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        fault = self._take_fault()
        if self.delay_seconds and self._stopping.wait(self.delay_seconds):
            return 503, _error("server stopping"), {}
        if fault is not None:
            status, message, retry_after = fault
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return status, _error(message), headers
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        texts = self.responder(prompt, body)
        if self.max_choices is not None:
            texts = texts[: self.max_choices]
        return 200, completion_payload(body, prompt, texts, chat), {}


def completion_payload(
    body: dict[str, Any], prompt: str, texts: list[str], chat: bool
) -> dict[str, Any]:
    """An OpenAI response: choices with text (or message), finish_reason, usage."""
    choices = []
    for index, text in enumerate(texts):
        choice: dict[str, Any] = {"index": index, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choices.append(choice)
    completion_tokens = sum(len(t.split()) for t in texts)
    return {
        "id": "cmpl-test",
        "object": "chat.completion" if chat else "text_completion",
        "model": body.get("model", ""),
        "choices": choices,
        "usage": {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": completion_tokens,
            "total_tokens": len(prompt.split()) + completion_tokens,
        },
    }


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


class _Handler(BaseHTTPRequestHandler):
    owner: LLMServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    # Headers and body leave in one segment (flushed after each request): two small
    # writes on a kept-alive connection stall 40 ms on Nagle + delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.owner.models]
            self._send(200, {"object": "list", "data": data})
        else:
            self._send(404, _error(f"no route {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) if length else b""
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self._send(404, _error(f"no route {self.path}"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, _error("body is not JSON"))
            return
        owner = self.owner
        owner._enter(self.path, body, {k.lower(): v for k, v in self.headers.items()})
        try:
            status, payload, headers = owner._answer(self.path, body)
        finally:
            owner._leave()
        self._send(status, payload, headers)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def fixed_responder(text: str) -> Responder:
    """Every sample answers `text` at once (benchmarks measure the client, not a model)."""

    def respond(prompt: str, params: dict[str, Any]) -> list[str]:
        return [text] * int(params.get("n", 1))

    return respond


def main() -> None:
    """Serve in the foreground: prints the base URL, then serves until stdin closes.

    An optional argument is a delay in seconds for every answer (model latency).
    """
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    server = LLMServer(responder=fixed_responder("    return a + b\n"), delay_seconds=delay).start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
