"""The memory plan against figures worked out by hand for StarCoder2-15B, -7B and -3B
(config files only: tests/models), its one-line refusal and what it suggests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from udfs.training.memory import GIB, RUNTIME_BYTES, ModelShape, Setup, plan, refusal

MODELS = Path(__file__).resolve().parents[1] / "models"


def shape(name: str) -> ModelShape:
    return ModelShape.from_config(json.loads((MODELS / f"{name}.json").read_text()))


# Per layer: q and o (h x h), k and v (h x 512 for 4 KV heads of 128, 256 for 2), the
# four attention biases, fc and proj (h x 4h) with their biases, two LayerNorms (2h each).
# Then the embeddings (49152 x h), the LM head when untied, the final LayerNorm.
HAND_COUNTED = {
    "starcoder2-15b": 40 * (2 * 6144 * 6144 + 2 * 6144 * 512 + (6144 + 512 + 512 + 6144)
                            + 2 * 6144 * 24576 + 24576 + 6144 + 2 * 2 * 6144)
                      + 2 * 49152 * 6144 + 2 * 6144,
    "starcoder2-7b": 32 * (2 * 4608 * 4608 + 2 * 4608 * 512 + (4608 + 512 + 512 + 4608)
                           + 2 * 4608 * 18432 + 18432 + 4608 + 2 * 2 * 4608)
                     + 49152 * 4608 + 2 * 4608,
    "starcoder2-3b": 30 * (2 * 3072 * 3072 + 2 * 3072 * 256 + (3072 + 256 + 256 + 3072)
                           + 2 * 3072 * 12288 + 12288 + 3072 + 2 * 2 * 3072)
                     + 49152 * 3072 + 2 * 3072,
}


@pytest.mark.parametrize("name", sorted(HAND_COUNTED))
def test_parameter_counts_are_the_hand_counted_ones(name):
    assert shape(name).parameters == HAND_COUNTED[name]


def test_the_published_sizes_are_16_7_and_3_billion():
    # What the model cards list: 15B untied is 15.96B, 7B and 3B (tied) 7.17B and 3.03B.
    assert [round(HAND_COUNTED[n] / 1e9, 2) for n in ("starcoder2-15b", "starcoder2-7b", "starcoder2-3b")] \
        == [15.96, 7.17, 3.03]


@pytest.mark.parametrize("name", sorted(HAND_COUNTED))
def test_parameter_counts_equal_the_real_model_built_without_memory(name):
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(MODELS / f"{name}.json")
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == shape(name).parameters


def test_published_single_gpu_plan_adds_up_by_hand():
    """The published run: bf16 weights and autocast, one process, batch 1 x 1280 tokens,
    Adafactor, no checkpointing."""
    parts = plan(shape("starcoder2-15b"), Setup("bfloat16")).parts
    params = HAND_COUNTED["starcoder2-15b"]
    assert parts["weights"] == parts["gradients"] == 2 * params
    # Adafactor's factored second moments: rows + columns of every matrix, every vector.
    per_layer = (12288 + 2 * 6656 + 12288 + 2 * (6144 + 24576)) + (13312 + 24576 + 6144 + 4 * 6144)
    sides = 40 * per_layer + 2 * (49152 + 6144) + 2 * 6144
    assert parts["optimizer"] == 2 * sides + 2 * 4 * 49152 * 6144  # + fp32 copies of the embedding
    # Per token per layer: 5h + 2 x 512 (attention), 2h + 2 x 4h (MLP); 2 bytes each.
    assert parts["activations"] == 40 * 1280 * (5 * 6144 + 1024 + 2 * 6144 + 2 * 24576) * 2
    assert parts["logits"] == 14 * 1280 * 49152
    tensors = 4 * params + parts["optimizer"] + parts["activations"] + parts["logits"]
    assert parts["runtime"] == RUNTIME_BYTES + int(0.05 * tensors)
    total = plan(shape("starcoder2-15b"), Setup("bfloat16")).total_gib
    assert 74 < total < 78  # "you just need one A100 80GB" (published README), with ~3 GiB to spare


def test_ddp_needs_a_third_copy_of_the_gradients_and_fsdp_divides_by_the_processes():
    sc15 = shape("starcoder2-15b")
    single = plan(sc15, Setup("bfloat16")).parts
    ddp = plan(sc15, Setup("bfloat16", processes=8)).parts
    fsdp = plan(sc15, Setup("bfloat16", processes=8, sharding="fsdp")).parts
    assert ddp["ddp buckets"] == single["gradients"] and ddp["weights"] == single["weights"]
    # Under FSDP with bf16 autocast accelerate keeps each shard in fp32: 4 bytes, 1/8 each.
    assert fsdp["weights"] == fsdp["gradients"] == 4 * HAND_COUNTED["starcoder2-15b"] // 8
    # Sharded, Adafactor sees flat shards: a full fp32 second moment of each shard, and
    # no fp32 scratch copies (the shards are fp32 already).
    assert fsdp["optimizer"] == 4 * HAND_COUNTED["starcoder2-15b"] // 8
    layer = HAND_COUNTED["starcoder2-15b"] - 2 * 49152 * 6144 - 2 * 6144
    assert fsdp["gathered layers"] == 3 * (layer // 40) * 2 + (2 * 49152 * 6144 + 2 * 6144) * 2


def test_checkpointing_keeps_one_input_per_layer_and_one_layer_whole():
    sc7 = shape("starcoder2-7b")
    parts = plan(sc7, Setup("bfloat16", gradient_checkpointing=True, max_length=2048)).parts
    one_layer = 2048 * (5 * 4608 + 1024 + 2 * 4608 + 2 * 18432) * 2
    assert parts["activations"] == 32 * 2048 * 4608 * 2 + one_layer


def test_ddp_of_the_15b_model_on_80_gib_is_refused_with_the_change_that_fits():
    line = refusal("starcoder2-15b", shape("starcoder2-15b"), Setup("bfloat16", processes=8), 80 * GIB)
    assert line is not None and "\n" not in line
    assert line.startswith("starcoder2-15b under DDP on 8 GPU(s) needs about 108 GiB per GPU, "
                           "the GPUs have 80 GiB: set train.sharding=fsdp (then about ")


def test_float32_on_one_gpu_is_told_to_load_in_bfloat16():
    line = refusal("starcoder2-15b", shape("starcoder2-15b"), Setup("float32"), 80 * GIB)
    assert line is not None and "set train.dtype=bfloat16" in line


def test_what_fits_is_not_refused():
    assert refusal("15b", shape("starcoder2-15b"), Setup("bfloat16", processes=8, sharding="fsdp"), 80 * GIB) is None
    assert refusal("15b", shape("starcoder2-15b"), Setup("bfloat16", processes=8, sharding="fsdp"), 40 * GIB) is None
    assert refusal("3b", shape("starcoder2-3b"), Setup("bfloat16"), 24 * GIB) is None


def test_nothing_fits_says_so():
    line = refusal("15b", shape("starcoder2-15b"), Setup("bfloat16"), 16 * GIB)
    assert line is not None and line.endswith("use more GPUs with train.sharding=fsdp, or GPUs with more memory")


def test_a_config_that_is_not_a_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="lacks a usable 'hidden_size'"):
        ModelShape.from_config({"model_type": "bert", "vocab_size": 10})


def test_llama_shapes_count_the_gated_mlp_and_rms_norms():
    llama = ModelShape.from_config({"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                                    "intermediate_size": 11008, "num_hidden_layers": 32,
                                    "num_attention_heads": 32, "num_key_value_heads": 32,
                                    "tie_word_embeddings": False})
    assert llama.parameters == 6_738_415_616  # Llama-2-7B, as its model card counts it
