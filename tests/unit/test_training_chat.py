"""The chat template saved with the tuned model: a chat-formatted conversation renders and
tokenizes exactly as the training pairs were laid out."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from tests.tiny_model import build_tiny_model
from udfs.prompts import load_sft_template
from udfs.training.chat import chat_template
from udfs.training.data import encode_pair

INSTRUCTION = "Write a function `twice(s)` that repeats {s} and \"quotes\" it.\n\nIt must be {{fast}}."
RESPONSE = "```python\ndef twice(s):\n    return s * 2\n```"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    loaded = AutoTokenizer.from_pretrained(directory)
    loaded.chat_template = chat_template(load_sft_template())
    saved = tmp_path_factory.mktemp("saved")
    loaded.save_pretrained(saved)
    return AutoTokenizer.from_pretrained(saved)  # as `vllm serve` and pipelines would load it


def test_the_generation_prompt_is_the_training_prompt(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": INSTRUCTION}],
                                         add_generation_prompt=True, tokenize=False)
    assert text == load_sft_template().prompt(INSTRUCTION)  # this tokenizer has no BOS


def test_a_whole_conversation_tokenizes_as_the_training_pair(tokenizer):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": INSTRUCTION},
                                         {"role": "assistant", "content": RESPONSE}], tokenize=True)
    pair = encode_pair(tokenizer, load_sft_template().prompt(INSTRUCTION), RESPONSE, max_length=10_000)
    assert pair is not None and list(ids) == pair.input_ids  # the response ends with EOS


def test_a_bos_token_comes_first_when_the_tokenizer_has_one(tokenizer):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.bos_token = tokenizer.eos_token  # StarCoder2's tokenizer: BOS and EOS alike
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == tokenizer.eos_token + load_sft_template().prompt("x")


def test_a_system_message_is_refused(tokenizer):
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="trained without a system prompt"):
        tokenizer.apply_chat_template([{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "x"}], tokenize=False)


def test_the_saved_template_is_in_the_tokenizer_config(tokenizer, tmp_path: Path):
    tokenizer.save_pretrained(tmp_path)
    saved = (tmp_path / "tokenizer_config.json").read_text() + "".join(
        p.read_text() for p in tmp_path.glob("chat_template.*"))
    assert "## Solution" in saved
