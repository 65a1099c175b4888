"""Engine running a Hugging Face causal LM in-process with `generate` (CPU or one GPU).

For small models, machines without vLLM, and tests: a checkpoint written by
`selfalign train` is evaluated with `llm.engine=transformers llm.model=<output_dir>`,
and the LLM half of the pipeline runs on a laptop CPU with a small model.

Batching: each prompt's n samples become n rows; rows that share their generation options
(greedy, or sampled at the same temperature and top_p; and max_tokens) are sorted by
length (less padding) and cut into batches of at most `batch_size` rows and
`token_budget` positions (CPU_* or CUDA_* by the device, unless set on the engine: long
prompts make small batches, short ones large), each one `model.generate`
call on left-padded ids with their attention mask (generate derives the position ids
from the mask, so a padded row sees the positions it would alone). Greedy completions
equal those of one prompt at a time in float32, the CPU's dtype (in bfloat16 on a GPU a
batch's other kernel shapes may round a near tie the other way).

Sampling cannot honour one seed per row in a batch: a batch is seeded (torch.manual_seed)
with its first row's seed (SamplingParams.seed, or the sample's with_sample seed when
n > 1; else llm.seed), so the same prompts with the same params sample the same again,
but a prompt's samples depend on the batch it ran in. With `batch_size = 1` every sample
is its own call seeded with its own seed, as before batching.

Stop sequences are applied to the decoded text, and a completion that reached max_tokens
without stopping has finish reason "length", as a server reports it. A prompt whose
SamplingParams.add_bos is set is tokenized by `prompt_token_ids` (exactly one BOS first,
as training encodes it, or none); otherwise with the tokenizer's defaults. A prompt of no
tokens gets a per-prompt error (it used to fail the whole call).

torch and transformers are the `train` extra, imported when the model loads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
EMPTY_PROMPT = "the prompt has no tokens"


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the first stop sequence, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def prompt_ids(tokenizer: Any, prompt: str, add_bos: bool | None) -> list[int]:
    """The prompt's token ids: the tokenizer's defaults (add_bos None) or prompt_token_ids."""
    if add_bos is None:
        return list(tokenizer(prompt, return_token_type_ids=False)["input_ids"])
    return prompt_token_ids(tokenizer, prompt, add_bos)


def encode_prompt(tokenizer: Any, prompt: str, add_bos: bool | None) -> Any:
    """One prompt's model inputs (input_ids, attention_mask; a batch of one, as tensors):
    a row of a batch before padding."""
    import torch
    from transformers import BatchEncoding

    ids = torch.tensor([prompt_ids(tokenizer, prompt, add_bos)], dtype=torch.long)
    return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Ready for batches: left padding (new tokens follow every row's last prompt token)
    and a pad token (eos where the tokenizer has none; masked out, so any id would do)."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@dataclass(frozen=True)
class Row:
    """One sample of one prompt: a row of a batch."""

    prompt: int  # the prompt's index in the call
    params: SamplingParams  # n = 1: this sample's (with_sample) params
    ids: tuple[int, ...]


def expand(ids: Sequence[int], index: int, params: SamplingParams) -> list[Row]:
    """The prompt's n samples as rows (a greedy prompt's n rows are n equal completions)."""
    if params.n == 1:
        return [Row(index, params, tuple(ids))]
    return [Row(index, params.with_sample(k), tuple(ids)) for k in range(params.n)]


def batch_key(params: SamplingParams) -> tuple[bool, float, float, int]:
    """What one `model.generate` call shares: the decoding options. n is not among them
    (samples are rows), nor stop (cut after decoding), seed or add_bos (per row)."""
    if params.temperature > 0:
        return True, params.temperature, params.top_p, params.max_tokens
    return False, 0.0, 1.0, params.max_tokens  # greedy ignores temperature and top_p


def plan_batches(rows: Sequence[Row], batch_size: int, token_budget: int | None = None) -> Iterator[list[Row]]:
    """Rows grouped by batch_key, sorted by length within a group (rows of like length
    waste less compute on padding), cut into batches of at most batch_size rows and, given
    a token budget, at most that many positions (rows x (longest prompt + max_tokens):
    what the batch's KV cache holds at its end). A row over the budget alone runs alone."""
    groups: dict[tuple[bool, float, float, int], list[Row]] = {}
    for row in rows:
        groups.setdefault(batch_key(row.params), []).append(row)
    for group in groups.values():
        batch: list[Row] = []
        for row in sorted(group, key=lambda row: len(row.ids)):  # stable: a prompt's samples stay in order
            # Sorted ascending, so this row is the longest of the batch it would join.
            positions = (len(batch) + 1) * (len(row.ids) + row.params.max_tokens)
            if batch and (len(batch) == batch_size or (token_budget is not None and positions > token_budget)):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch


def left_pad(rows: Sequence[Row], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids padded on the left to the longest row, and the mask (1: a real token)."""
    width = max(len(row.ids) for row in rows)
    ids = [[pad_id] * (width - len(row.ids)) + list(row.ids) for row in rows]
    mask = [[0] * (width - len(row.ids)) + [1] * len(row.ids) for row in rows]
    return ids, mask


def generation_options(params: SamplingParams, pad_id: int) -> dict[str, Any]:
    """The keyword arguments of `model.generate` for a batch sharing these params."""
    sampled = params.temperature > 0
    options: dict[str, Any] = {"do_sample": sampled, "max_new_tokens": params.max_tokens,
                               "pad_token_id": pad_id}
    if sampled:  # given when greedy, generate warns that they are unused
        options.update(temperature=params.temperature, top_p=params.top_p)
    return options


def generated_length(new: Sequence[int], eos_ids: frozenset[int]) -> tuple[int, bool]:
    """How many of a row's new tokens it generated: up to and including its first EOS
    (a batch pads a finished row until the batch ends), and whether it ended on EOS."""
    for position, token in enumerate(new):
        if token in eos_ids:
            return position + 1, True
    return len(new), False


def completion(text: str, count: int, ended: bool, row: Row) -> Completion:
    """The row's completion from its decoded text. completion_tokens counts every
    generated token, those after a stop sequence included (the model generated them,
    as a server that stops on the text counts what it decoded); never the padding."""
    cut, stopped = cut_at_stop(text, row.params.stop)
    reason = "stop" if stopped or ended or count < row.params.max_tokens else CUT_AT_MAX_TOKENS
    return Completion(cut, reason, len(row.ids), count)


class TransformersEngine:
    CACHE_FIELDS = ("model", "dtype", "seed")
    ONE_PER_PROCESS = True
    # The most rows (samples) one model.generate call holds, and the most positions
    # (rows x (longest prompt + max_tokens)): the memory of the padded batch and its KV
    # cache. 16,384 positions of a 0.5B model (24 layers, 2 KV heads of 64) in float32
    # are about 400 MB. A GPU has room for more.
    CPU_BATCH_SIZE = 64
    CPU_TOKEN_BUDGET = 16_384
    CUDA_BATCH_SIZE = 64
    CUDA_TOKEN_BUDGET = 262_144

    def __init__(self, cfg: EngineSettings) -> None:
        self.cfg = cfg
        self._model: Any = None
        self._tokenizer: Any = None
        # None: CPU_* or CUDA_* by the device the model loads on.
        self.batch_size: int | None = None
        self.token_budget: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"engine": "transformers", "model": self.cfg.model}

    def held_gpus(self) -> int:
        """1 once the model sits on a GPU, for GPU-seconds (udfs/accounting.py)."""
        return int(self._model is not None and self._model.device.type == "cuda")

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
            self._tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(self.cfg.model))
            model: Any = AutoModelForCausalLM.from_pretrained(self.cfg.model, dtype=dtype)
            self._model = model.to(device)
        except OSError as exc:
            raise EngineUnavailable(f"llm.model '{self.cfg.model}' cannot be loaded: "
                                    f"{str(exc).splitlines()[0]}") from None
        self._model.eval()
        if self.batch_size is None:
            self.batch_size = self.CUDA_BATCH_SIZE if device == "cuda" else self.CPU_BATCH_SIZE
        if self.token_budget is None:
            self.token_budget = self.CUDA_TOKEN_BUDGET if device == "cuda" else self.CPU_TOKEN_BUDGET

    def generate(self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]) -> list[Generation]:
        self._load()
        per_prompt = params_per_prompt(prompts, params)
        encoded = [prompt_ids(self._tokenizer, prompt, p.add_bos) for prompt, p in zip(prompts, per_prompt, strict=True)]
        rows = [row for index, (ids, p) in enumerate(zip(encoded, per_prompt, strict=True)) if ids
                for row in expand(ids, index, p)]
        completions: list[list[Completion]] = [[] for _ in prompts]
        for batch in plan_batches(rows, self.batch_size or 1, self.token_budget):
            for row, done in zip(batch, self._run_batch(batch), strict=True):
                completions[row.prompt].append(done)  # a prompt's samples run in order
        return [Generation(completions=tuple(done)) if ids else Generation.failed(EMPTY_PROMPT, transient=False)
                for ids, done in zip(encoded, completions, strict=True)]

    def _run_batch(self, batch: Sequence[Row]) -> list[Completion]:
        """One model.generate call over rows sharing their options; completions in row order."""
        import torch

        tokenizer, model = self._tokenizer, self._model
        pad_id = self._pad_id()
        ids, mask = left_pad(batch, pad_id)
        input_ids = torch.tensor(ids, dtype=torch.long, device=model.device)
        attention_mask = torch.tensor(mask, dtype=torch.long, device=model.device)
        first = batch[0].params
        if first.temperature > 0:  # greedy draws nothing: no seed to set
            torch.manual_seed(first.seed if first.seed is not None else self.cfg.seed)
        with torch.no_grad():
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                    **generation_options(first, pad_id))
        eos_ids = self._eos_ids()
        done = []
        for row, tokens in zip(batch, output[:, input_ids.shape[1]:].tolist(), strict=True):
            count, ended = generated_length(tokens, eos_ids)
            text = tokenizer.decode(tokens[:count], skip_special_tokens=True)
            done.append(completion(text, count, ended, row))
        return done

    def _pad_id(self) -> int:
        """prepare_tokenizer made eos the pad where there was none; a tokenizer with neither
        has no finished rows to pad, and 0 fills only masked positions."""
        pad = self._tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def _eos_ids(self) -> frozenset[int]:
        """The ids that end a completion: the tokenizer's eos and the generation config's
        (a list in some models), the ids on which generate stops a row."""
        configured = self._model.generation_config.eos_token_id
        listed = configured if isinstance(configured, list) else [configured]
        return frozenset(int(i) for i in [*listed, self._tokenizer.eos_token_id] if i is not None)
