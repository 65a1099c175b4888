"""Generation throughput: the Spark `respond` stage vs the engine driven directly.

Two comparisons, each with its baseline run beside it in the same process:

- openai: the respond stage (engine `openai`) against a local OpenAI-compatible
  server with a fixed per-request latency, vs the same prompts through the same
  client in one plain loop (`engine.generate`). Prints requests/s and the ratio.
- vllm (needs a GPU and `pip install 'selfalign[gpu]'`): plain `vllm.LLM.generate`
  over the prompts in one process vs the respond stage with engine `vllm`. Prints
  output tokens/s and the ratio. Without a GPU it says so and exits cleanly.

    .venv/bin/python bench/generation_bench.py --n 400 --latency-ms 20
    .venv/bin/python bench/generation_bench.py --vllm-model bigcode/starcoder2-3b --n 2000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTRUCTION = "Write a function `add_{i}(a, b)` that returns the sum of a and b plus {i}."


def instructions(n: int, prefix: str = "") -> list[tuple[str, str]]:
    texts = [prefix + INSTRUCTION.format(i=i) for i in range(n)]
    return [(hashlib.sha256(t.encode()).hexdigest(), t) for t in texts]


def plant_instructions(ctx, rows: list[tuple[str, str]]) -> None:
    from schemas import INSTRUCTIONS

    data = [(iid, iid, "function implementation", "easy", ["arithmetic"], text, "bench", "v", "{}", "bench")
            for iid, text in rows]
    ctx.lake.insert_new(INSTRUCTIONS, ctx.spark.createDataFrame(data, INSTRUCTIONS.schema))


def spark_respond(overrides: list[str], rows: list[tuple[str, str]], lake: Path) -> tuple[float, int]:
    """Seconds for the respond stage over `rows`, and output tokens it recorded."""
    from pyspark.sql import functions as F

    from jobs.core.config import load_config
    from jobs.core.context import Context
    from jobs.core.runner import run
    from jobs.stages import respond
    from schemas import RESPONSES

    ctx = Context.create(load_config(None, [f"lake.root={lake}", *overrides]))
    # Warm-up run on one extra instruction: JVM, Python workers and the worker's cached
    # engine (a vLLM model load) are paid outside the timing, as in a long nightly run.
    plant_instructions(ctx, instructions(1, prefix="warm"))
    run(respond.STAGE, ctx)
    plant_instructions(ctx, rows)
    start = time.perf_counter()
    summary = run(respond.STAGE, ctx)
    elapsed = time.perf_counter() - start
    assert summary.rows_failed == 0, f"{summary.rows_failed} rows failed"
    timed = [iid for iid, _ in rows]
    tokens = (ctx.lake.read(RESPONSES).where(F.col("instruction_id").isin(timed))
              .agg(F.sum("completion_tokens")).first()[0] or 0)
    return elapsed, int(tokens)


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", str(latency_s)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def bench_openai(n: int, latency_ms: float, concurrency: int) -> None:
    from jobs.core.config import load_config
    from jobs.stages.generation import sampling
    from udfs.llm import EngineSettings
    from udfs.llm.openai import OpenAIEngine
    from udfs.prompts import load_prompts, respond_prompt

    rows = instructions(n)
    proc, base_url = start_server(latency_ms / 1000)
    try:
        cfg = load_config(None, ["generation.respond.n=1"])
        params = sampling(cfg.generation.respond, "respond", seed=1)
        prompts = load_prompts()
        texts = [respond_prompt(text, prompts, key) for key, text in rows]
        engine = OpenAIEngine(EngineSettings(engine="openai", base_url=base_url, model="", concurrency=concurrency))
        engine.check()
        start = time.perf_counter()
        results = engine.generate(texts, params)
        plain_s = time.perf_counter() - start
        engine.close()
        assert all(r.ok for r in results)

        overrides = ["llm.engine=openai", f"llm.base_url={base_url}", "llm.model=",
                     f"llm.concurrency={concurrency}", "generation.respond.n=1"]
        with tempfile.TemporaryDirectory() as tmp:
            spark_s, _ = spark_respond(overrides, rows, Path(tmp) / "lake")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    print(f"openai engine, {n} prompts, server latency {latency_ms:.0f} ms, concurrency {concurrency}/task")
    print(f"  plain client loop : {n / plain_s:8.1f} requests/s ({plain_s:.2f}s)")
    print(f"  spark respond     : {n / spark_s:8.1f} requests/s ({spark_s:.2f}s, incl. Delta commits)")
    print(f"  ratio spark/plain : {plain_s / spark_s:.2f}x")


def gpu_available() -> str | None:
    """None when vLLM can run here, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm is not installed (pip install 'selfalign[gpu]')"
    return None


def bench_vllm(model: str, n: int, max_tokens: int) -> None:
    why = gpu_available()
    if why is not None:
        print(f"vllm: skipped ({why}); run this on a GPU machine to measure it")
        return
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    import vllm

    from udfs.prompts import load_prompts, respond_prompt

    rows = instructions(n)
    prompts = load_prompts()
    texts = [respond_prompt(text, prompts, key) for key, text in rows]
    llm = vllm.LLM(model=model, dtype="bfloat16", seed=0)
    params = vllm.SamplingParams(n=1, temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=1)
    start = time.perf_counter()
    outputs = llm.generate(texts, params, use_tqdm=False)
    plain_s = time.perf_counter() - start
    plain_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    del llm  # free the GPU for the stage's own engine

    overrides = ["llm.engine=vllm", f"llm.model={model}", "generation.respond.n=1",
                 f"generation.respond.max_tokens={max_tokens}", f"generation.batch_rows={n}"]
    with tempfile.TemporaryDirectory() as tmp:
        spark_s, spark_tokens = spark_respond(overrides, rows, Path(tmp) / "lake")
    print(f"vllm {model}, {n} prompts, max_tokens {max_tokens}")
    print(f"  plain vllm.LLM.generate : {plain_tokens / plain_s:10.0f} output tokens/s")
    print(f"  spark respond stage     : {spark_tokens / spark_s:10.0f} output tokens/s (model loaded)")
    print(f"  ratio spark/plain       : {(spark_tokens / spark_s) / (plain_tokens / plain_s):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--vllm-model", default=None, help="also bench vLLM with this model")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    bench_openai(args.n, args.latency_ms, args.concurrency)
    if args.vllm_model:
        bench_vllm(args.vllm_model, args.n, args.max_tokens)
    else:
        print(f"vllm: skipped (no --vllm-model given; {gpu_available() or 'GPU available'})")


if __name__ == "__main__":
    main()
