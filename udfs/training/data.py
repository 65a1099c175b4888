"""Token ids and labels of one instruction/response pair, and batches of them.

The text is the SFT template (conf/prompts/sft_template.yaml) rendered with the pair:
the prompt part (everything before the response) is tokenized on its own and masked
out of the loss; the response is followed by the tokenizer's EOS, which is learned, so
the tuned model stops. Tokenizing the two parts apart keeps the boundary exact whatever
the tokenizer would merge across it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from udfs.llm.base import prompt_token_ids

IGNORE = -100  # labels the loss skips (PyTorch cross-entropy's ignore_index)


class Tokenizer(Protocol):
    eos_token_id: int | None
    pad_token_id: int | None
    bos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def encode_pair(tokenizer: Tokenizer, prompt: str, response: str, max_length: int) -> Encoded | None:
    """The ids of prompt + response + EOS, labels IGNORE on the prompt; cut to max_length.
    None when no response token would be left to learn from (the prompt fills it)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: the tuned model could not learn to stop")
    prompt_ids = prompt_token_ids(tokenizer, prompt, add_bos=True)  # evaluation's rule too
    response_ids = [*tokenizer.encode(response, add_special_tokens=False), tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return Encoded(ids, labels)


def pad_batch(examples: Sequence[Encoded | dict[str, Any]], pad_id: int) -> dict[str, list[list[int]]]:
    """Right-padded input_ids (pad_id), labels (IGNORE) and attention_mask (0) of a batch."""
    rows = [e if isinstance(e, Encoded) else Encoded(e["input_ids"], e["labels"]) for e in examples]
    width = max(len(r.input_ids) for r in rows)
    return {
        "input_ids": [r.input_ids + [pad_id] * (width - len(r.input_ids)) for r in rows],
        "labels": [r.labels + [IGNORE] * (width - len(r.labels)) for r in rows],
        "attention_mask": [[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows],
    }
