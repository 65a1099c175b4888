"""Engine for any OpenAI-compatible server: vllm serve, SGLang, TGI, llama.cpp, Ollama.

`/v1/completions` by default (base models prompted with few-shot text), or
`/v1/chat/completions` with llm.api=chat (the prompt becomes one user message).

Why a thread pool and not asyncio: each Spark task runs generate() on one
batch in a plain Python worker; a pool of llm.concurrency threads over one
keep-alive httpx.Client keeps that many requests in flight, which is what a
continuous-batching server needs to fill its GPU, without an event loop in
the UDF. The pool is the concurrency bound: one thread has one request in
flight, so the server sees at most llm.concurrency requests per task.

Failures (see udfs/llm/__init__.py for the contract):
- 429, 5xx, timeouts and connection errors are retried max_retries times
  with exponential backoff and jitter (Retry-After honoured, capped by
  backoff_max_seconds: EngineSettings' constants); a prompt still failing becomes a transient
  per-prompt error in its Generation.
- 400/413/422 (prompt too long, bad parameter for this prompt) are not retried:
  a non-transient per-prompt error carrying the server's message.
- 401/403/404 (key, permissions, model name or URL) hold for every prompt:
  generate() raises EngineError at once, naming the llm.* keys to fix.

n > 1 is sent as `n` in one request. Servers that ignore `n` (they return one
choice) or reject it are detected once per engine; the missing samples are
then sent as separate n=1 requests with distinct seeds (seed + i).

SamplingParams.add_bos cannot be honoured (the server tokenizes the text): generate()
refuses it with EngineError.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import httpx

from udfs.llm.base import (
    Completion,
    EngineError,
    EngineSettings,
    EngineUnavailable,
    Generation,
    SamplingParams,
    params_per_prompt,
)

RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx
PROMPT_STATUSES = frozenset({400, 413, 422})  # this prompt's problem: per-prompt error
MAX_MESSAGE_CHARS = 300


class RequestFailed(Exception):
    """One prompt's request failed for good; becomes Generation.error."""

    def __init__(self, message: str, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class OpenAIEngine:
    def __init__(self, cfg: EngineSettings) -> None:
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self._model = cfg.model
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # None: unknown yet; False once the server returned fewer choices than n.
        self._native_n: bool | None = None
        self._random = random.Random()

    # --- Engine protocol -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "model": self._model or self.cfg.model,
            "base_url": self.base_url,
            "api": self.cfg.api,
        }

    def check(self) -> None:
        """GET /models with a short timeout; resolves llm.model "" to the first served model."""
        ids = self._served_models()
        if self.cfg.model and ids and self.cfg.model not in ids:
            raise EngineUnavailable(
                f"llm.model '{self.cfg.model}' is not served at {self.base_url}: it serves "
                f"{', '.join(ids[:5])}; set llm.model to one of them (or '' for the first)"
            )
        if not self.cfg.model:
            if not ids:
                raise EngineUnavailable(
                    f"{self.base_url}/models lists no model and llm.model is '': set llm.model"
                )
            self._model = ids[0]

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        per_prompt = params_per_prompt(prompts, params)
        if not prompts:
            return []
        if any(p.add_bos is not None for p in per_prompt):
            # The server tokenizes the text with its own defaults; no token ids are sent.
            raise EngineError(
                "llm.engine=openai sends prompts as text and the server tokenizes them, so it "
                "cannot place a BOS token (evaluate.add_bos): use llm.engine=vllm or "
                "transformers, or evaluate.add_bos=auto"
            )
        if not self._model:
            self.check()  # resolves the served model name once
        workers = min(self.cfg.concurrency, len(prompts))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-openai")
        futures = [pool.submit(self._one_prompt, p, sp) for p, sp in zip(prompts, per_prompt, strict=True)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # EngineError (wrong key/model) holds for every prompt: stop at once.
            _cancel(futures)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- one prompt ------------------------------------------------------------------

    def _one_prompt(self, prompt: str, params: SamplingParams) -> Generation:
        try:
            return Generation(completions=tuple(self._sample(prompt, params)))
        except RequestFailed as failure:
            return Generation.failed(str(failure), failure.transient)

    def _sample(self, prompt: str, params: SamplingParams) -> list[Completion]:
        """All n completions of one prompt, natively or as n=1 requests."""
        if params.n == 1:
            return self._request(prompt, params)[:1]
        got: list[Completion] = []
        if self._native_n is not False:
            got = self._try_native_n(prompt, params)
        for index in range(len(got), params.n):
            got.extend(self._request(prompt, params.with_sample(index))[:1])
        return got

    def _try_native_n(self, prompt: str, params: SamplingParams) -> list[Completion]:
        try:
            got = self._request(prompt, params)
        except RequestFailed as failure:
            if failure.status not in PROMPT_STATUSES:
                raise
            # Rejected: `n` unsupported, or the prompt itself is bad. One n=1 request
            # tells which (it raises again in the second case).
            got = self._request(prompt, params.with_sample(0))[:1]
        self._native_n = len(got) >= params.n
        return got[: params.n]

    def _request(self, prompt: str, params: SamplingParams) -> list[Completion]:
        """One HTTP request with retries; >= 1 completion or RequestFailed/EngineError."""
        url = f"{self.base_url}/{'chat/completions' if self.cfg.api == 'chat' else 'completions'}"
        body = request_body(self.cfg.api, self._model, prompt, params)
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            delay: float | None = None
            try:
                response = self._http().post(url, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.cfg.timeout_seconds:g}s"
            except httpx.TransportError as exc:
                last = f"connection error: {_one_line(str(exc)) or type(exc).__name__}"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return parse_choices(self.cfg.api, response.json())
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        last = f"unreadable response: {_one_line(str(exc))}"
                elif status in RETRY_STATUSES or status >= 500:
                    last = f"HTTP {status}: {server_message(response)}"
                    delay = retry_after_seconds(response.headers.get("retry-after"))
                else:
                    raise self._client_error(url, response)
            if attempt + 1 < attempts:
                time.sleep(self._backoff(attempt, delay))
        raise RequestFailed(f"{last} (gave up after {attempts} attempts)", transient=True)

    def _client_error(self, url: str, response: httpx.Response) -> Exception:
        status = response.status_code
        message = f"HTTP {status} from {url}: {server_message(response)}"
        if status in PROMPT_STATUSES:
            return RequestFailed(message, transient=False, status=status)
        if status in (401, 403):
            return EngineError(
                f"{message}; put a valid key in the env var named by llm.api_key_env "
                f"('{self.cfg.api_key_env}')"
            )
        return EngineError(
            f"{message}; check llm.base_url (usually ends in /v1), llm.model "
            f"('{self._model}') and llm.api ('{self.cfg.api}')"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = self.cfg.backoff_max_seconds
        if retry_after is not None:
            return min(retry_after, cap)
        delay = min(cap, self.cfg.backoff_seconds * 2**attempt)
        # Equal jitter: tasks that failed together do not all come back together.
        return delay / 2 + self._random.uniform(0, delay / 2)

    # --- connection ------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = build_client(self.cfg)
            return self._client

    def _served_models(self) -> list[str]:
        url = f"{self.base_url}/models"
        try:
            response = self._http().get(url, timeout=self.cfg.check_timeout_seconds)
        except httpx.HTTPError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise EngineUnavailable(
                f"llm.engine=openai cannot reach {url} ({reason}): start an OpenAI-compatible "
                "server there or set llm.base_url (and llm.model, llm.api_key_env)"
            ) from None
        if response.status_code in (401, 403):
            raise EngineUnavailable(
                f"{url} answered HTTP {response.status_code} ({server_message(response)}): put a "
                f"valid key in the env var named by llm.api_key_env ('{self.cfg.api_key_env}')"
            )
        if response.status_code != 200:
            raise EngineUnavailable(
                f"{url} answered HTTP {response.status_code} ({server_message(response)}): "
                "check llm.base_url (usually ends in /v1)"
            )
        try:
            return [str(item["id"]) for item in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EngineUnavailable(
                f"{url} did not answer an OpenAI model list: check llm.base_url"
            ) from None


# --- pure helpers (unit-tested without a server) ------------------------------------------


def build_client(cfg: EngineSettings) -> httpx.Client:
    headers = {"User-Agent": "selfalign"}
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(cfg.timeout_seconds, connect=cfg.connect_timeout_seconds),
        # One kept-alive connection per thread of the pool: no reconnects, no waiting.
        limits=httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
        ),
    )


def request_body(api: str, model: str, prompt: str, params: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
    }
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    # Left out at their defaults: some servers reject `n` or an empty `stop` list.
    if params.n != 1:
        body["n"] = params.n
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def parse_choices(api: str, payload: dict[str, Any]) -> list[Completion]:
    """OpenAI response -> completions in choice order; at least one or ValueError."""
    choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
    if not choices:
        raise ValueError("no choices")
    usage = payload.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens")
    # usage.completion_tokens is the sum over all choices: per choice only when n == 1.
    completion_tokens = usage.get("completion_tokens") if len(choices) == 1 else None
    return [
        Completion(
            text=_choice_text(api, choice),
            finish_reason=choice.get("finish_reason") or "unknown",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        for choice in choices
    ]


def _choice_text(api: str, choice: dict[str, Any]) -> str:
    if api == "chat":
        return (choice.get("message") or {}).get("content") or ""
    return choice["text"] or ""


def server_message(response: httpx.Response) -> str:
    """The server's own error text, one line: {"error": {"message": ...}} or the body."""
    try:
        payload = response.json()
    except ValueError:
        return _one_line(response.text) or response.reason_phrase
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error
    return _one_line(str(error))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent/unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 3] + "..."


def _cancel(futures: list[Future[Generation]]) -> None:
    for future in futures:
        future.cancel()
