"""Which split an SFT pair belongs to: a fixed function of its instruction id alone, so
export's files and train's validation loss agree, whatever order or run saw the pair."""

from __future__ import annotations

import hashlib


def split_of(instruction_id: str, validation_fraction: float) -> str:
    """"validation" or "train", fixed by the instruction id alone."""
    digest = hashlib.sha256(instruction_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / float(1 << 64)
    return "validation" if position < validation_fraction else "train"
