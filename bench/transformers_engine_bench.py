"""Transformers engine throughput: prompts batched vs one at a time, on the same prompts.

Builds the tiny test model (tests/tiny_model.py: a two-layer Llama, random weights) in a
temporary directory, or reads `--model` (any local causal LM checkpoint), and runs the
heads of the sample corpus' Python files as prompts through TransformersEngine twice
per decoding mode (greedy, and sampled at temperature 0.8): with a batch cap of 1 (every
sample its own `model.generate` call, as the engine ran before batching) as the baseline,
then batched (the engine's cap for the device). Prints generated tokens/s each way and
the ratio, and whether greedy completions agree between the two. Timings are reported,
never asserted; the load average printed first says whether something else ran.

    .venv/bin/python bench/transformers_engine_bench.py
    .venv/bin/python bench/transformers_engine_bench.py --prompts 64 --max-tokens 64 --threads 2
    .venv/bin/python bench/transformers_engine_bench.py --model ./checkpoints/run1 --threads 8 --batch-size 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny_model import build_tiny_model, corpus_texts  # noqa: E402
from udfs.llm import EngineSettings, Generation, SamplingParams  # noqa: E402
from udfs.llm.transformers_engine import TransformersEngine  # noqa: E402

HEAD_CHARS = 240  # a prompt: the first characters of a file (its docstring or imports)


def corpus_prompts(count: int) -> list[str]:
    return [text[:HEAD_CHARS] for text in corpus_texts(limit=count * 2)][:count]


def timed(engine: TransformersEngine, prompts: list[str], params: SamplingParams) -> tuple[float, int, list[Generation]]:
    """Seconds for one generate call, the tokens it generated, and its results."""
    start = time.perf_counter()
    results = engine.generate(prompts, params)
    elapsed = time.perf_counter() - start
    tokens = sum(c.completion_tokens or 0 for result in results for c in result.completions)
    return elapsed, tokens, results


def bench_mode(name: str, model: str, prompts: list[str], params: SamplingParams, batch_size: int | None) -> None:
    settings = EngineSettings(engine="transformers", model=model, dtype="float32")
    alone, batched = TransformersEngine(settings), TransformersEngine(settings)
    alone.batch_size, batched.batch_size = 1, batch_size
    for engine in (alone, batched):  # load and warm up outside the timing
        engine.generate(prompts[:2], params)
    alone_s, alone_tokens, alone_results = timed(alone, prompts, params)
    batched_s, batched_tokens, batched_results = timed(batched, prompts, params)
    alone_rate, batched_rate = alone_tokens / alone_s, batched_tokens / batched_s
    print(f"{name}: {len(prompts)} prompts, max_tokens {params.max_tokens}, batch cap {batched.batch_size} "
          f"rows, {batched.token_budget:,} positions")
    print(f"  one at a time : {alone_rate:8.1f} tokens/s ({alone_tokens} tokens, {alone_s:.2f}s)")
    print(f"  batched       : {batched_rate:8.1f} tokens/s ({batched_tokens} tokens, {batched_s:.2f}s)")
    print(f"  ratio         : {batched_rate / alone_rate:.2f}x")
    if params.temperature == 0:
        agree = sum(a == b for a, b in zip(alone_results, batched_results, strict=True))
        print(f"  greedy completions equal: {agree}/{len(prompts)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    # One thread by default: the tiny model's matrices are too small for intra-op threads
    # to pay, and on a 2-core machine a second thread that waits on a busy neighbour made
    # runs vary tenfold. Give a real checkpoint the machine's cores.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch cap (default: the engine's)")
    parser.add_argument("--model", default=None, help="a local checkpoint instead of the tiny model")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"cuda: {torch.cuda.is_available()}, load average before: {load}")
    prompts = corpus_prompts(args.prompts)
    greedy = SamplingParams(max_tokens=args.max_tokens)
    sampled = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=args.max_tokens, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_model(Path(tmp) / "tiny"))
        print(f"model: {args.model or 'tiny random Llama (tests/tiny_model.py)'}")
        bench_mode("greedy", model, prompts, greedy, args.batch_size)
        bench_mode("sampled (temperature 0.8, top_p 0.95)", model, prompts, sampled, args.batch_size)


if __name__ == "__main__":
    main()
