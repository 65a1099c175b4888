"""MinHash-LSH near-duplicate detection for the `dedup` stage, as plain Python + numpy.

The Spark job wraps these functions (signatures and band hashes in pandas UDFs);
its candidate, confirmation and component steps are DataFrame code, tested
against the pure references in tests/minhash_reference.py. Signatures are
bit-identical to `datasketch.MinHash(num_perm, seed)` fed the same shingles, so
sketches stay interchangeable with datasketch tools, but they are computed for
all shingles of a batch at once instead of one `update()` per shingle.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np

_TOKEN = re.compile(r"\w+")
# text-dedup's tokenizer (minhash.py: NON_ALPHA), which the published seed dedup used.
_NON_ALPHA = re.compile(r"\W")
# text-dedup's --min_length default: a text of fewer tokens gets no shingles.
NONALPHA_MIN_TOKENS = 5
Tokenizer = Literal["words", "nonalpha_split"]

# datasketch 2.0.0 schemes: name -> (input hash bytes, signature dtype, empty-slot value).
# datasketch's permutation schemes
Scheme = Literal["affine32", "affine64", "legacy"]
_SCHEMES: dict[str, tuple[int, type[np.unsignedinteger], int]] = {
    "affine32": (4, np.uint32, (1 << 32) - 1),
    "affine64": (8, np.uint64, (1 << 64) - 1),
    "legacy": (4, np.uint64, (1 << 32) - 1),
}
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_LEGACY_MAX_HASH = np.uint64((1 << 32) - 1)

# MurmurHash3 finalizer constants, per width (the same bijection datasketch pre-mixes with).
_FMIX = {
    32: (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16)),
    64: (
        np.uint64(33),
        np.uint64(0xFF51AFD7ED558CCD),
        np.uint64(33),
        np.uint64(0xC4CEB9FE1A85EC53),
        np.uint64(33),
    ),
}


# --- shingles -------------------------------------------------------------------

def shingles(code: str, size: int = 5, tokenizer: Tokenizer = "words") -> set[str]:
    """Word `size`-grams of lower-cased `\\w+` tokens, space-joined.

    Tokens rather than characters, so whitespace and punctuation edits do not
    count as differences; a function shorter than one shingle is one shingle,
    so short functions still get a signature that can match their copies.
    `tokenizer="nonalpha_split"`: text-dedup's shingles instead (`nonalpha_shingles`).
    """
    if size < 1:
        raise ValueError(f"shingle size must be >= 1, got {size}")
    if tokenizer == "nonalpha_split":
        return nonalpha_shingles(code, size)
    tokens = _TOKEN.findall(code.lower())
    if not tokens:
        return set()
    if len(tokens) < size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def nonalpha_shingles(code: str, size: int = 5) -> set[str]:
    """text-dedup's shingles (as the published seed dedup made them): the lower-cased
    text split at every single non-word character, so empty tokens stay and runs of
    spaces or punctuation count, then `size`-grams joined by spaces. Fewer than
    NONALPHA_MIN_TOKENS tokens: no shingles (text-dedup's min_length; such a text then
    takes no part in dedup). A text shorter than one shingle is one shingle, as there."""
    tokens = _NON_ALPHA.split(code.lower())
    if len(tokens) < NONALPHA_MIN_TOKENS:
        return set()
    if len(tokens) < size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


# --- signatures -------------------------------------------------------------------

def _fmix(values: np.ndarray, width: int) -> np.ndarray:
    # Array (not scalar) arithmetic: numpy wraps silently, which is the mod 2^width we want.
    s1, m1, s2, m2, s3 = _FMIX[width]
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


class MinHasher:
    """Batch MinHash signatures, equal value for value to datasketch's `MinHash`.

    `scheme` is datasketch's permutation scheme; its default ("affine32",
    uint32 values) is what `MinHash(num_perm, seed)` uses since 2.0.0, and
    "legacy" reproduces the pre-2.0 mod-(2^61-1) sketches (uint64 values).
    """

    def __init__(
        self,
        num_perm: int = 256,
        seed: int = 1,
        scheme: Scheme = "affine32",
        chunk_rows: int = 2048,
    ) -> None:
        if scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(_SCHEMES)}, got {scheme!r}")
        # Imported here: datasketch takes over a second to import and only the
        # permutation parameters are needed from it, once per worker.
        from datasketch import MinHash

        self.num_perm = num_perm
        self.seed = seed
        self.scheme = scheme
        self.chunk_rows = max(1, chunk_rows)
        self._hash_bytes, self.dtype, empty = _SCHEMES[scheme]
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
        self._a = np.asarray(a, dtype=self.dtype).reshape(1, -1)
        self._b = np.asarray(b, dtype=self.dtype).reshape(1, -1)
        # datasketch's initial slot value: what a set with no shingles hashes to.
        self.empty_value = self.dtype(empty)

    def hash_shingles(self, items: Iterable[str]) -> np.ndarray:
        """datasketch's default input hash (first 4 or 8 SHA-1 bytes, little-endian), batched."""
        items = items if isinstance(items, list) else list(items)
        sha1 = hashlib.sha1
        try:
            # Plain encode() is the fast path; the slice to 4/8 bytes happens in numpy.
            digests = b"".join([sha1(item.encode()).digest() for item in items])
        except UnicodeEncodeError:
            # A lone surrogate must not crash a worker; valid text encodes the same either way.
            digests = b"".join(
                [sha1(item.encode("utf-8", "surrogatepass")).digest() for item in items]
            )
        width = self._hash_bytes
        raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20)[:, :width]
        values = np.ascontiguousarray(raw).view("<u8" if width == 8 else "<u4").reshape(-1)
        return values.astype(self.dtype)

    def _permute(self, hashes: np.ndarray) -> np.ndarray:
        """(k,) input hashes -> (k, num_perm) permuted values, exactly as datasketch computes them."""
        column = hashes.reshape(-1, 1)
        if self.scheme == "legacy":
            return ((column * self._a + self._b) % _MERSENNE_PRIME) & _LEGACY_MAX_HASH
        width = 64 if self.scheme == "affine64" else 32
        return _fmix(column, width) * self._a + self._b

    def _min_over(self, hashes: np.ndarray) -> np.ndarray:
        """Signature of one (possibly huge) document, chunked to bound memory."""
        result = np.full(self.num_perm, self.empty_value, dtype=self.dtype)
        for start in range(0, len(hashes), self.chunk_rows):
            chunk = self._permute(hashes[start : start + self.chunk_rows])
            np.minimum(result, chunk.min(axis=0), out=result)
        return result

    def signature(self, items: Iterable[str]) -> np.ndarray:
        """(num_perm,) signature of one shingle set."""
        return self._min_over(self.hash_shingles(items))

    def signatures(self, shingle_sets: Sequence[Iterable[str]]) -> np.ndarray:
        """(n, num_perm) signatures; documents are packed into chunks so numpy calls amortize."""
        return self.signatures_and_hashes(shingle_sets)[0]

    def signatures_and_hashes(
        self, shingle_sets: Sequence[Iterable[str]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(n, num_perm) signatures, and each document's sorted distinct shingle hashes
        (what `exact_jaccard` compares), from one hashing pass."""
        sets = [items if isinstance(items, list) else list(items) for items in shingle_sets]
        counts = np.fromiter((len(items) for items in sets), dtype=np.int64, count=len(sets))
        hashes = self.hash_shingles([item for items in sets for item in items])
        starts = np.concatenate(([0], np.cumsum(counts))).tolist()
        per_doc = [np.unique(hashes[starts[i] : starts[i + 1]]) for i in range(len(sets))]
        return self._signatures_of(hashes, counts, starts), per_doc

    def _signatures_of(self, hashes: np.ndarray, counts: np.ndarray, starts: list[int]) -> np.ndarray:
        out = np.full((len(counts), self.num_perm), self.empty_value, dtype=self.dtype)
        for lo, hi in _pack(counts, self.chunk_rows):
            if hi - lo == 1:
                out[lo] = self._min_over(hashes[starts[lo] : starts[hi]])
                continue
            permuted = self._permute(hashes[starts[lo] : starts[hi]])
            base = starts[lo]
            # A min per document over contiguous rows: much faster than
            # np.minimum.reduceat along axis 0, and empty documents keep the empty value.
            for doc in range(lo, hi):
                if starts[doc + 1] > starts[doc]:
                    out[doc] = permuted[starts[doc] - base : starts[doc + 1] - base].min(axis=0)
        return out


def _pack(counts: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive document ranges whose shingle total stays within `budget` (or one big doc)."""
    lo, total = 0, 0
    for index, count in enumerate(counts.tolist()):
        if index > lo and total + count > budget:
            yield lo, index
            lo, total = index, 0
        total += count
    if lo < len(counts):
        yield lo, len(counts)


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal slots: the MinHash estimate of the Jaccard similarity."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signature shapes differ: {sig_a.shape} vs {sig_b.shape}")
    return float(np.count_nonzero(sig_a == sig_b)) / float(sig_a.size)


# --- banding ----------------------------------------------------------------------

def _simpson(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Composite Simpson's rule along the last axis (an even number of intervals)."""
    intervals = values.shape[-1] - 1
    weights = np.ones(intervals + 1)
    weights[1:-1:2] = 4.0
    weights[2:-1:2] = 2.0
    return values @ weights * (hi - lo) / (3.0 * intervals)


def lsh_error(
    threshold: float,
    bands: int | np.ndarray,
    rows: int | np.ndarray,
    fp_weight: float = 0.5,
    fn_weight: float = 0.5,
    intervals: int = 512,
) -> np.ndarray:
    """Weighted area of false positives (S-curve below the threshold) and false
    negatives (1 - S-curve above it), assuming similarities uniform on [0, 1]."""
    b = np.asarray(bands, dtype=np.float64)[..., None]
    r = np.asarray(rows, dtype=np.float64)[..., None]
    below = np.linspace(0.0, threshold, intervals + 1)
    above = np.linspace(threshold, 1.0, intervals + 1)
    false_pos = _simpson(1.0 - (1.0 - below**r) ** b, 0.0, threshold)
    false_neg = _simpson((1.0 - above**r) ** b, threshold, 1.0)
    return fp_weight * false_pos + fn_weight * false_neg


def optimal_bands(
    threshold: float,
    num_perm: int,
    fp_weight: float = 0.5,
    fn_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising `lsh_error`."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    grid = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands = np.array([b for b, _ in grid])
    rows = np.array([r for _, r in grid])
    errors = lsh_error(threshold, bands, rows, fp_weight, fn_weight)
    best = int(np.argmin(errors))
    return int(bands[best]), int(rows[best])


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHAIN = np.uint64(0xC2B2AE3D27D4EB4F)


def band_hash_matrix(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) int64 band keys: a mixing chain over each band's values, seeded
    by the band index, so equal rows in different bands never share a key.

    Pure integer arithmetic, so the same on every worker and Python process
    (unlike `hash()`), and signed int64 so it fits a Spark LongType column.
    """
    sigs = np.atleast_2d(np.asarray(signatures)).astype(np.uint64)
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows exceed {sigs.shape[1]} permutations")
    grouped = sigs[:, : bands * rows].reshape(len(sigs), bands, rows)
    keys = np.broadcast_to(
        _fmix((np.arange(bands, dtype=np.uint64) + np.uint64(1)) * _GOLDEN, 64), grouped.shape[:2]
    ).copy()
    for row in range(rows):
        # h * odd + v is a bijection in h and in v, so distinct bands only collide by chance.
        keys = _fmix(keys * _CHAIN + grouped[:, :, row], 64)
    return keys.view(np.int64)


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> list[int]:
    """One signed 64-bit key per band of one signature."""
    return band_hash_matrix(np.asarray(signature).reshape(1, -1), bands, rows)[0].tolist()


# --- helpers for the Spark side (jobs/ops/lsh.py) ---------------------------------------

@functools.lru_cache(maxsize=4)
def cached_hasher(num_perm: int, seed: int) -> MinHasher:
    """One `MinHasher` per Python worker and parameters: its setup imports datasketch."""
    return MinHasher(num_perm, seed)


# Every slot of the stored (affine32) signature of a set with no shingles.
EMPTY_SLOT = np.uint32((1 << 32) - 1)


def signatures_to_bytes(signatures: np.ndarray) -> list[bytes]:
    """(n, num_perm) uint32 signatures -> one little-endian blob per row (the stored form)."""
    rows = np.ascontiguousarray(np.atleast_2d(signatures).astype("<u4", copy=False))
    return [row.tobytes() for row in rows]


def signatures_from_bytes(blobs: Sequence[bytes], num_perm: int) -> np.ndarray:
    """Stored blobs -> (n, num_perm) uint32 signatures; a blob of the wrong size is an error,
    not a silent misalignment of every later row."""
    width = 4 * num_perm
    bad = next((i for i, blob in enumerate(blobs) if len(blob) != width), None)
    if bad is not None:
        raise ValueError(f"signature {bad} has {len(blobs[bad])} bytes, expected {width} "
                         f"(num_perm={num_perm})")
    joined = b"".join(bytes(blob) for blob in blobs)
    return np.frombuffer(joined, dtype="<u4").reshape(len(blobs), num_perm)


def hashes_to_bytes(hashes: Sequence[np.ndarray]) -> list[bytes]:
    """Sorted distinct shingle hashes -> one little-endian uint32 blob each (the stored form)."""
    return [np.ascontiguousarray(h.astype("<u4", copy=False)).tobytes() for h in hashes]


def exact_jaccard(left: bytes, right: bytes) -> float:
    """|A & B| / |A | B| of two stored shingle-hash sets: the exact Jaccard of the shingle
    sets up to 32-bit hash collisions (a few per billion pairs of shingles; each moves a
    Jaccard by at most 1/|A | B|). Two empty sets are identical (1.0), as their
    signatures are."""
    a = np.frombuffer(left, dtype="<u4")
    b = np.frombuffer(right, dtype="<u4")
    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 1.0


def jaccard_rows(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise `jaccard_estimate` of two (n, num_perm) signature matrices."""
    if left.shape != right.shape:
        raise ValueError(f"signature shapes differ: {left.shape} vs {right.shape}")
    return np.count_nonzero(left == right, axis=1) / float(left.shape[1])
