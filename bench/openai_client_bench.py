"""Requests/s of the openai engine's client against a local instant server.

    .venv/bin/python bench/openai_client_bench.py [--n 2000] [--concurrency 16]

The server (tests/llm_server.py, in its own process so it does not share this
one's GIL) answers a fixed short completion at once (or after --latency-ms), so
the figures are the client's own overhead: (a) a plain sequential httpx loop over one keep-alive
connection, the baseline; (b) OpenAIEngine.generate() over the same prompts
with llm.concurrency threads. A real model takes 100x longer per request; there
the concurrency is what keeps a continuous-batching server's GPU busy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from udfs.llm import EngineSettings, SamplingParams  # noqa: E402
from udfs.llm.openai import OpenAIEngine, request_body  # noqa: E402

MODEL = "test-model"
PARAMS = SamplingParams(max_tokens=32, stop=("\n\n",))


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_server", str(latency_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def sequential_baseline(base_url: str, prompts: list[str]) -> float:
    """Seconds for one plain httpx loop, one request at a time."""
    with httpx.Client(timeout=30) as client:
        start = time.perf_counter()
        for prompt in prompts:
            response = client.post(
                f"{base_url}/completions", json=request_body("completions", MODEL, prompt, PARAMS)
            )
            response.raise_for_status()
            response.json()["choices"][0]["text"]
        return time.perf_counter() - start


def engine_run(base_url: str, prompts: list[str], concurrency: int) -> float:
    cfg = EngineSettings(engine="openai", base_url=base_url, model=MODEL, concurrency=concurrency)
    engine = OpenAIEngine(cfg)
    try:
        engine.check()  # also opens the client, outside the timing
        start = time.perf_counter()
        results = engine.generate(prompts, PARAMS)
        elapsed = time.perf_counter() - start
    finally:
        engine.close()
    failed = sum(not r.ok for r in results)
    assert failed == 0, f"{failed} prompts failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    # 0: the client's own overhead. A few ms stands in for a server's per-request latency.
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    prompts = [f"def f{i}(a, b):\n" for i in range(args.n)]
    print(
        f"cpu_count={os.cpu_count()} n={args.n} concurrency={args.concurrency} "
        f"server latency={args.latency_ms:g} ms"
    )
    proc, base_url = start_server(args.latency_ms / 1000)
    try:
        sequential_baseline(base_url, prompts[:50])  # warm up both sides
        baseline = sequential_baseline(base_url, prompts)
        ours = engine_run(base_url, prompts, args.concurrency)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    print(f"(a) sequential httpx loop: {args.n / baseline:8.0f} req/s ({baseline:.2f} s)")
    print(f"(b) OpenAIEngine.generate: {args.n / ours:8.0f} req/s ({ours:.2f} s)")
    print(f"ratio (b)/(a): {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
