"""How much GPU memory one training process needs, from the model's config alone.

`plan(shape, setup)` adds up, per GPU, what the training process holds at its peak:
weights, gradients (and DDP's bucket copy of them), the optimizer's state and its fp32
scratch, activations (all of them, or only each layer's input under gradient
checkpointing), the logits and loss, FSDP's gathered layers, and a fixed runtime
allowance (CUDA context, kernels' workspaces, allocator slack). No weights are read:
`ModelShape.from_config` takes a `config.json` as a dict.

The figures are estimates from tensor sizes (the counting rules are in each function's
docstring); bench/gpu_train_check.py prints them beside the measured peak.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# CUDA context, cuBLAS/NCCL workspaces and what the caching allocator keeps but does not
# use: what nvidia-smi shows beyond the tensors (about 1 GiB of context on an H100/A100).
RUNTIME_BYTES = int(1.5 * GIB)
ALLOCATOR_SLACK = 0.05  # fragmentation on top of the tensors


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that decide its memory."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool
    bias: bool  # every linear layer has a bias (StarCoder2's use_bias)
    gated_mlp: bool  # Llama-style gate/up/down (3 matrices) instead of fc/proj (2)
    norm_bias: bool  # LayerNorm (weight and bias) rather than RMSNorm (weight)
    model_type: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a Hugging Face config.json (as a dict). StarCoder2 (fc/proj MLP, LayerNorm,
        biases) and Llama-like models (gated MLP, RMSNorm) are told apart by model_type."""
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            model_type = str(config.get("model_type", ""))
            starcoder = model_type == "starcoder2"
            return cls(
                vocab=int(config["vocab_size"]), hidden=hidden,
                intermediate=int(config.get("intermediate_size") or 4 * hidden),
                layers=int(config["num_hidden_layers"]), heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                # transformers' default when config.json says nothing is to tie them.
                tied_embeddings=bool(config.get("tie_word_embeddings", True)),
                bias=bool(config.get("use_bias", starcoder)) if starcoder
                else bool(config.get("attention_bias", False)),
                gated_mlp=not starcoder, norm_bias=starcoder, model_type=model_type,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the model config lacks a usable {exc}: not a decoder-only "
                             f"transformer config.json") from None

    @property
    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: attention, MLP and its two norms."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        q_out = self.heads * self.head_dim
        attention = h * q_out + 2 * h * kv + q_out * h
        if self.bias:
            attention += q_out + 2 * kv + h
        if self.gated_mlp:
            mlp = 3 * h * self.intermediate + (2 * self.intermediate + h if self.bias else 0)
        else:
            mlp = 2 * h * self.intermediate + (self.intermediate + h if self.bias else 0)
        return attention + mlp + 2 * self.norm_parameters

    @property
    def outer_parameters(self) -> int:
        """Parameters outside the layers: embeddings, the final norm, the LM head."""
        embeddings = self.vocab * self.hidden
        return embeddings * (1 if self.tied_embeddings else 2) + self.norm_parameters

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_parameters + self.outer_parameters

    @property
    def largest_parameter(self) -> int:
        return max(self.vocab * self.hidden, self.hidden * self.intermediate)

    @property
    def norm_parameters(self) -> int:
        return 2 * self.hidden if self.norm_bias else self.hidden


@dataclass(frozen=True)
class Setup:
    """The training settings that decide memory (TrainConfig's, resolved)."""

    dtype: Literal["float32", "bfloat16", "float16"]  # the weights as loaded
    processes: int = 1
    sharding: Literal["none", "fsdp"] = "none"
    per_device_batch_size: int = 1
    max_length: int = 1280
    gradient_checkpointing: bool = False
    optimizer: Literal["adafactor", "adamw_torch"] = "adafactor"
    mixed_precision: bool = True  # bf16 autocast: activations in 2 bytes whatever the weights
    attention: str = "sdpa"  # eager keeps the heads x tokens x tokens probabilities

    def described(self) -> str:
        how = "FSDP" if self.sharding == "fsdp" else ("DDP" if self.processes > 1 else "one process")
        parts = [f"{self.dtype}", f"{how} on {self.processes} GPU{'s' if self.processes > 1 else ''}",
                 f"batch {self.per_device_batch_size} x {self.max_length} tokens", self.optimizer]
        if self.gradient_checkpointing:
            parts.append("gradient checkpointing")
        return ", ".join(parts)


@dataclass(frozen=True)
class Plan:
    """Bytes per GPU, by what holds them."""

    parts: dict[str, int]
    setup: Setup
    shape: ModelShape

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def line(self, name: str) -> str:
        """One line: the total and its largest parts."""
        biggest = sorted(self.parts.items(), key=lambda kv: -kv[1])[:4]
        detail = ", ".join(f"{key} {value / GIB:.1f}" for key, value in biggest)
        return (f"{name} ({self.shape.parameters / 1e9:.2f}B parameters), {self.setup.described()}: "
                f"about {self.total_gib:.0f} GiB per GPU ({detail} GiB)")


def stored_bytes(setup: Setup) -> int:
    """Bytes per stored parameter, gradient and optimizer state element. Under FSDP with
    mixed precision accelerate keeps each shard in fp32 whatever the checkpoint's dtype (as
    DeepSpeed ZeRO-3 does; accelerate/accelerator.py, prepare_model) and computes in bf16."""
    if setup.sharding == "fsdp" and setup.mixed_precision:
        return 4
    return DTYPE_BYTES[setup.dtype]


def plan(shape: ModelShape, setup: Setup) -> Plan:
    weight_bytes = stored_bytes(setup)
    shards = setup.processes if setup.sharding == "fsdp" else 1
    params = shape.parameters
    parts = {
        "weights": params * weight_bytes // shards,
        "gradients": params * weight_bytes // shards,
        "optimizer": optimizer_bytes(shape, setup, shards),
        "activations": activation_bytes(shape, setup),
        "logits": logits_bytes(shape, setup),
    }
    if setup.sharding == "none" and setup.processes > 1:
        # DDP reduces gradients through buckets of their own (Trainer leaves
        # gradient_as_bucket_view off): a second copy of every gradient.
        parts["ddp buckets"] = params * weight_bytes
    if setup.sharding == "fsdp":
        parts["gathered layers"] = gathered_bytes(shape, setup)
    parts["runtime"] = RUNTIME_BYTES + int(ALLOCATOR_SLACK * sum(parts.values()))
    return Plan(parts, setup, shape)


def optimizer_bytes(shape: ModelShape, setup: Setup, shards: int) -> int:
    """AdamW: two moments per parameter, in the parameters' dtype. Adafactor (the
    published optimizer, no first moment): row and column second moments per matrix when
    it sees matrices, a full second moment when FSDP hands it flat shards; and while it
    steps one parameter, fp32 copies of that parameter and its gradient."""
    weight_bytes = stored_bytes(setup)
    if setup.optimizer == "adamw_torch":
        return 2 * shape.parameters * weight_bytes // shards
    if shards > 1:
        state = shape.parameters * weight_bytes // shards
    else:
        outer = (shape.vocab + shape.hidden) * (1 if shape.tied_embeddings else 2) + shape.norm_parameters
        state = (shape.layers * _layer_matrix_sides(shape) + outer) * weight_bytes
    scratch = 2 * 4 * shape.largest_parameter // shards if weight_bytes < 4 else 0
    return state + scratch


def _layer_matrix_sides(shape: ModelShape) -> int:
    """Rows plus columns of a layer's weight matrices, plus its 1-D parameters."""
    h, kv, q = shape.hidden, shape.kv_heads * shape.head_dim, shape.heads * shape.head_dim
    sides = (h + q) + 2 * (h + kv) + (q + h)
    mlp_matrices = 3 if shape.gated_mlp else 2
    sides += mlp_matrices * (h + shape.intermediate)
    vectors = shape.layer_parameters - _layer_matrix_parameters(shape)
    return sides + vectors


def _layer_matrix_parameters(shape: ModelShape) -> int:
    h, kv, q = shape.hidden, shape.kv_heads * shape.head_dim, shape.heads * shape.head_dim
    mlp_matrices = 3 if shape.gated_mlp else 2
    return h * q + 2 * h * kv + q * h + mlp_matrices * h * shape.intermediate


def layer_activation_elements(shape: ModelShape, tokens: int, attention: str) -> int:
    """Elements one layer keeps for its backward pass, for `tokens` tokens: the
    attention block's norm input and output, Q, K, V, the attention output and the output
    projection's input; the MLP block's norm input and output, and the MLP's inner
    activations (fc output and GELU output; or gate, up, SiLU(gate) and their product).
    Eager attention also keeps the heads x tokens x tokens probabilities."""
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    attention_block = 5 * h + 2 * kv
    mlp_block = 2 * h + (4 if shape.gated_mlp else 2) * shape.intermediate
    per_token = attention_block + mlp_block
    elements = per_token * tokens
    if attention == "eager":
        elements += shape.heads * tokens * tokens
    return elements


def activation_bytes(shape: ModelShape, setup: Setup) -> int:
    """Under gradient checkpointing each layer keeps only its input, and one layer at a
    time is recomputed whole during the backward pass."""
    tokens = setup.per_device_batch_size * setup.max_length
    element = 2 if setup.mixed_precision or DTYPE_BYTES[setup.dtype] == 2 else 4
    one_layer = layer_activation_elements(shape, tokens, setup.attention) * element
    if setup.gradient_checkpointing:
        return shape.layers * tokens * shape.hidden * element + one_layer
    return shape.layers * one_layer


def logits_bytes(shape: ModelShape, setup: Setup) -> int:
    """The LM head's logits (2 bytes), the loss's fp32 copy and log-softmax (4 + 4), and
    the fp32 gradient flowing back (4): 14 bytes per token and vocabulary entry."""
    tokens = setup.per_device_batch_size * setup.max_length
    return 14 * tokens * shape.vocab


def gathered_bytes(shape: ModelShape, setup: Setup) -> int:
    """FSDP gathers a layer whole for its forward and backward, prefetching the next one,
    and holds its full gradient until the reduce-scatter; the root unit (embeddings, the
    final norm, the LM head) stays gathered through the step."""
    compute = 2 if setup.mixed_precision else DTYPE_BYTES[setup.dtype]
    layer = shape.layer_parameters
    return (2 * layer + layer) * compute + shape.outer_parameters * compute


def fits(total_bytes: int, gpu_bytes: int) -> bool:
    return total_bytes <= gpu_bytes


def suggestion(shape: ModelShape, setup: Setup, gpu_bytes: int) -> str:
    """The first single change, in the order a user would try them, whose plan fits."""
    tries: list[tuple[str, Setup]] = []
    if setup.sharding == "none" and setup.processes > 1:
        tries.append(("set train.sharding=fsdp", replace(setup, sharding="fsdp")))
    if not setup.gradient_checkpointing:
        tries.append(("set train.gradient_checkpointing=true", replace(setup, gradient_checkpointing=True)))
    if setup.sharding == "none" and setup.processes > 1:
        tries.append(("set train.sharding=fsdp and train.gradient_checkpointing=true",
                      replace(setup, sharding="fsdp", gradient_checkpointing=True)))
    if setup.per_device_batch_size > 1:
        tries.append(("set train.per_device_batch_size=1", replace(setup, per_device_batch_size=1)))
    if setup.dtype == "float32":
        tries.append(("set train.dtype=bfloat16", replace(setup, dtype="bfloat16")))
    for advice, changed in tries:
        figure = plan(shape, changed).total
        if fits(figure, gpu_bytes):
            return f"{advice} (then about {figure / GIB:.0f} GiB)"
    return "use more GPUs with train.sharding=fsdp, or GPUs with more memory"


def refusal(name: str, shape: ModelShape, setup: Setup, gpu_bytes: int) -> str | None:
    """None when the plan fits; else one line saying by how much, and what to change."""
    needed = plan(shape, setup)
    if fits(needed.total, gpu_bytes):
        return None
    how = "FSDP" if setup.sharding == "fsdp" else ("DDP" if setup.processes > 1 else "one process")
    return (f"{name} under {how} on {setup.processes} GPU(s) needs about {needed.total_gib:.0f} GiB "
            f"per GPU, the GPUs have {gpu_bytes / GIB:.0f} GiB: {suggestion(shape, setup, gpu_bytes)}")
