"""A tiny causal LM built at test time: nothing is fetched from a hub.

A byte-level BPE tokenizer (512 tokens) trained with `tokenizers` on the bundled sample
corpus's Python files, and a two-layer Llama with hidden size 64 and random weights
(seeded), saved as a Hugging Face directory that AutoTokenizer/AutoModelForCausalLM load
like any checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.paths import REPO

SAMPLE = REPO / "data" / "stack_sample" / "stack_sample.parquet"
EOS, PAD = "<|endoftext|>", "<|pad|>"


def corpus_texts(limit: int = 300) -> list[str]:
    return [text for text in pq.read_table(SAMPLE, columns=["content"]).column("content").to_pylist()[:limit]
            if text]


def build_tiny_model(out: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train the tokenizer, build the model, save both into `out`; returns `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus_texts(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True, attention_dropout=0.1,  # a dropout the recipe must turn off
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    return out
