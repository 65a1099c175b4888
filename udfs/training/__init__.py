"""Fine-tuning on the SFT pairs: plain Python + torch/transformers, no Spark.

- `data`: one pair -> input ids and labels (-100 on the prompt and on padding, so the
  loss is on the response and its EOS only), and the padding collator;
- `run`: the training process `selfalign train` starts once per GPU (or once on CPU)
  through TorchDistributor: Hugging Face Trainer with the published recipe, checkpoints
  and resume, a progress line, the final model and tokenizer as safetensors.

torch and transformers are the `train` extra; importing this package needs neither.
"""
