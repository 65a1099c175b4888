"""One process of a 2-process CPU (gloo) run, started by torchrun from
tests/e2e/test_train_sharding.py: the tiny model wrapped the way `train.sharding=fsdp`
asks the Trainer to (full shard, one FSDP unit per decoder layer as named by
udfs.training.run.decoder_layer_classes, the model's own parameters), or in DDP, a few
AdamW steps on the same token rows, then the whole weights saved by rank 0 with what
each rank held.

    torchrun --nproc_per_node 2 -m tests.fsdp_worker MODEL_DIR fsdp|ddp OUT.pt
"""

from __future__ import annotations

import functools
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import (
    FullStateDictConfig,
    FullyShardedDataParallel,
    ShardingStrategy,
    StateDictType,
)
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoConfig, AutoModelForCausalLM

from udfs.training.run import decoder_layer_classes

STEPS = 4


def wrap(model: torch.nn.Module, mode: str, layer_names: list[str]) -> torch.nn.Module:
    if mode == "ddp":
        return DistributedDataParallel(model)
    layers = {type(m) for m in model.modules() if type(m).__name__ in layer_names}
    return FullyShardedDataParallel(
        model, auto_wrap_policy=functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layers),
        sharding_strategy=ShardingStrategy.FULL_SHARD, use_orig_params=True, device_id=torch.device("cpu"))


def whole_weights(wrapped: torch.nn.Module, mode: str) -> dict[str, torch.Tensor]:
    if mode == "ddp":
        return {k: v.detach().clone() for k, v in wrapped.module.state_dict().items()}
    gather = FullStateDictConfig(offload_to_cpu=False, rank0_only=False)  # CPU already; offloading crashes there
    with FullyShardedDataParallel.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, gather):
        return {k: v.detach().clone() for k, v in wrapped.state_dict().items()}


def main(model_dir: str, mode: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attention_dropout=0.0)
    total = sum(p.numel() for p in model.parameters())
    wrapped = wrap(model, mode, decoder_layer_classes(config))
    held = sum(p.numel() for p in wrapped.parameters())
    dims = sorted({p.dim() for p in wrapped.parameters() if p.numel()})
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
    rows = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        ids = torch.randint(0, config.vocab_size, (dist.get_world_size(), 24), generator=rows)
        mine = ids[rank:rank + 1]  # each rank its own row, as a distributed sampler would
        wrapped(input_ids=mine, labels=mine).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    weights = whole_weights(wrapped, mode)
    held_by_rank: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(held_by_rank, held)
    if rank == 0:
        torch.save({"weights": weights, "held": held_by_rank, "total": total, "dims": dims}, out)
    dist.destroy_process_group()
    # Freeing main's objects can hang with DDP over gloo (faulthandler: a thread with no
    # Python frame, the main thread on the line that called main): about one run in four
    # on a loaded 2-core machine, a 300 s timeout in CI. Everything is saved and the
    # group destroyed by now, so the process ends here, without those destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:4])
