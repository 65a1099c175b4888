"""The training data rules and helpers without torch: labels, padding, accumulation,
complete checkpoints, the output lock, and the transformers engine's stop handling."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from udfs.llm.transformers_engine import cut_at_stop
from udfs.training.data import IGNORE, Encoded, encode_pair, pad_batch
from udfs.training.run import CHECKPOINT_FILES, TrainSettings, exclusive, last_complete_checkpoint


class WordTokenizer:
    """One id per space-separated word (ids from 10), EOS 2, PAD 3, optional BOS 1."""

    eos_token_id: int | None = 2
    pad_token_id: int | None = 3

    def __init__(self, bos: bool = False) -> None:
        self.bos_token_id = 1 if bos else None
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert not add_special_tokens  # the pair encoder adds BOS and EOS itself
        return [self.vocab.setdefault(word, 10 + len(self.vocab)) for word in text.split()]


def test_labels_ignore_the_prompt_and_learn_the_response_and_eos():
    tokenizer = WordTokenizer(bos=True)
    encoded = encode_pair(tokenizer, "Task: add one", "return x + 1", max_length=100)
    assert encoded is not None
    prompt = [1, *tokenizer.encode("Task: add one", add_special_tokens=False)]
    response = [*tokenizer.encode("return x + 1", add_special_tokens=False), 2]
    assert encoded.input_ids == prompt + response
    assert encoded.labels == [IGNORE] * len(prompt) + response
    assert encoded.trained_tokens == 5  # four words and EOS


def test_long_pairs_are_cut_and_a_prompt_filling_the_window_is_left_out():
    tokenizer = WordTokenizer()
    encoded = encode_pair(tokenizer, "a b c", "d e f g", max_length=5)
    assert encoded is not None and len(encoded.input_ids) == 5
    assert encoded.labels == [IGNORE, IGNORE, IGNORE, *encoded.input_ids[3:]]
    assert encode_pair(tokenizer, "a b c d e", "f", max_length=5) is None


def test_a_tokenizer_without_eos_is_refused():
    tokenizer = WordTokenizer()
    tokenizer.eos_token_id = None
    with pytest.raises(ValueError, match="no EOS token"):
        encode_pair(tokenizer, "a", "b", max_length=10)


def test_padding_is_masked_in_labels_and_attention():
    batch = pad_batch([Encoded([5, 6, 7], [IGNORE, 6, 7]), {"input_ids": [8], "labels": [8]}], pad_id=3)
    assert batch["input_ids"] == [[5, 6, 7], [8, 3, 3]]
    assert batch["labels"] == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"] == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize(("per_device", "processes", "steps"), [(1, 1, 64), (4, 8, 2), (3, 1, 22), (64, 2, 1)])
def test_gradient_accumulation_reaches_the_effective_batch(per_device, processes, steps):
    settings = TrainSettings("m", "out", "t.jsonl", None, per_device_batch_size=per_device, processes=processes)
    assert settings.gradient_accumulation == steps
    assert per_device * processes * steps >= 64


def _checkpoint(root: Path, step: int, files: tuple[str, ...]) -> None:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("x")


def test_resume_takes_the_newest_checkpoint_that_was_written_whole(tmp_path):
    whole = ("model.safetensors", "optimizer.pt", *CHECKPOINT_FILES)
    _checkpoint(tmp_path, 50, whole)
    _checkpoint(tmp_path, 100, whole)
    _checkpoint(tmp_path, 150, ("model.safetensors", "optimizer.pt"))  # killed while saving
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_a_sharded_checkpoint_counts_once_its_shard_directories_are_complete(tmp_path):
    """FSDP's sharded state dicts: weights and optimizer are directories of shards whose
    .metadata file is written once every rank's shard is in."""
    _checkpoint(tmp_path, 10, ("pytorch_model_fsdp_0/.metadata", "optimizer_0/.metadata", *CHECKPOINT_FILES))
    _checkpoint(tmp_path, 20, ("pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/.metadata", *CHECKPOINT_FILES))
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def _hold(directory: str, ready, release) -> None:
    with exclusive(directory):
        ready.set()
        release.wait(30)


def test_a_second_trainer_on_the_same_directory_stops_with_one_line(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RuntimeError, match="another training run is writing"), exclusive(str(tmp_path)):
            pass
    finally:
        release.set()
        holder.join(30)
    with exclusive(str(tmp_path)):  # free again once the holder is gone
        pass


def test_stop_sequences_cut_the_decoded_text():
    assert cut_at_stop("    return x\n```\nmore", ("\n```",)) == ("    return x", True)
    assert cut_at_stop("no stop here", ("\n```", "")) == ("no stop here", False)
    assert cut_at_stop("a;b|c", (";", "|")) == ("a", True)


def test_settings_travel_as_json():
    settings = TrainSettings("m", "out", "t.jsonl", "v.jsonl", learning_rate=2e-5)
    assert json.loads(settings.to_json())["learning_rate"] == 2e-5
