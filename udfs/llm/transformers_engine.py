"""Engine running a Hugging Face causal LM in-process with `generate` (CPU or one GPU).

For small models, machines without vLLM, and tests: a checkpoint written by
`selfalign train` is evaluated with `llm.engine=transformers llm.model=<output_dir>`.
Prompts are generated one at a time (no batching: simple and exact, not fast); stop
sequences are applied to the decoded text, and a completion that reached max_tokens
without stopping has finish reason "length", as a server reports it. A prompt whose
SamplingParams.add_bos is set is tokenized by `prompt_token_ids` (exactly one BOS first,
as training encodes it, or none); otherwise with the tokenizer's defaults.

torch and transformers are the `train` extra, imported when the model loads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from udfs.llm.base import (
    CUT_AT_MAX_TOKENS,
    Completion,
    EngineSettings,
    EngineUnavailable,
    Generation,
    SamplingParams,
    params_per_prompt,
    prompt_token_ids,
)

INSTALL_HINT = "pip install 'selfalign[train]'"


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the first stop sequence, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def encode_prompt(tokenizer: Any, prompt: str, add_bos: bool | None) -> Any:
    """The model's inputs (input_ids, attention_mask; a batch of one, as tensors)."""
    if add_bos is None:
        return tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
    import torch
    from transformers import BatchEncoding

    ids = torch.tensor([prompt_token_ids(tokenizer, prompt, add_bos)], dtype=torch.long)
    return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


class TransformersEngine:
    CACHE_FIELDS = ("model", "dtype", "seed")
    ONE_PER_PROCESS = True

    def __init__(self, cfg: EngineSettings) -> None:
        self.cfg = cfg
        self._model: Any = None
        self._tokenizer: Any = None

    def describe(self) -> dict[str, Any]:
        return {"engine": "transformers", "model": self.cfg.model}

    def check(self) -> None:
        missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
        if missing:
            raise EngineUnavailable(f"llm.engine is 'transformers' but {' and '.join(missing)} "
                                    f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}")

    def _load(self) -> None:
        if self._model is not None:
            return
        self.check()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" and self.cfg.dtype == "bfloat16" else torch.float32
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.model)
            model: Any = AutoModelForCausalLM.from_pretrained(self.cfg.model, dtype=dtype)
            self._model = model.to(device)
        except OSError as exc:
            raise EngineUnavailable(f"llm.model '{self.cfg.model}' cannot be loaded: "
                                    f"{str(exc).splitlines()[0]}") from None
        self._model.eval()

    def generate(self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        self._load()
        return [self._one(prompt, p) for prompt, p in zip(prompts, params_per_prompt(prompts, params), strict=True)]

    def _one(self, prompt: str, params: SamplingParams) -> Generation:
        import torch

        tokenizer, model = self._tokenizer, self._model
        encoded = encode_prompt(tokenizer, prompt, params.add_bos).to(model.device)
        completions = []
        for index in range(params.n):
            sample = params.with_sample(index) if params.n > 1 else params
            if sample.seed is not None or self.cfg.seed is not None:
                torch.manual_seed(sample.seed if sample.seed is not None else self.cfg.seed)
            sampled = sample.temperature > 0
            options: dict[str, Any] = {"do_sample": sampled, "max_new_tokens": sample.max_tokens,
                                       "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
            if sampled:
                options.update(temperature=sample.temperature, top_p=sample.top_p)
            with torch.no_grad():
                output = model.generate(**encoded, **options)
            new = output[0][encoded["input_ids"].shape[1]:]
            text, stopped = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), sample.stop)
            ended = bool(len(new)) and int(new[-1]) == tokenizer.eos_token_id
            reason = "stop" if stopped or ended or len(new) < sample.max_tokens else CUT_AT_MAX_TOKENS
            completions.append(Completion(text, reason, int(encoded["input_ids"].shape[1]), len(new)))
        return Generation(completions=tuple(completions))
