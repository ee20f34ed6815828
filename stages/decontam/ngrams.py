"""N-gram hashes of text and code for decontamination, with the positions needed to show what matched.

Text: the dedup stage's byte tokeniser (`stages.dedup.shingles`): lower-cased, words are runs of letters and
digits, punctuation and whitespace separate words (so line breaks, double spaces and re-wrapping change
nothing), every run of digits is `0` (a GSM8K problem with its numbers changed is the same text). GSM8K's
calculator annotations (`<<48/2=24>>`) are not words: copies of GSM8K answers keep them or not. Each window of
n words is a 64-bit hash; a sequence shorter than n is one window, the whole sequence. A window is kept only
with at least `min_content` words that are neither stop words nor `0`.

Code: the tokens of `stages.dedup.code_tokens` (tree-sitter leaves, comments and docstrings dropped, literals
`S`/`N`, identifiers numbered). Inside each n-token window an identifier is replaced by the position of its first
appearance in that window, so a consistently renamed copy gives the same windows, and so does the same code
inside a longer program (a block-wide numbering would shift).

Memory: a batch's words as numpy arrays (about 40 bytes per word), nothing kept between batches.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.dedup.shingles import (
    _K,
    Words,
    _bytes,
    _fold_digits,
    _powers,
    _split,
    _words,
    mix64,
    offsets_after,
    word_hashes,
)

U64 = np.uint64

# English function words (a compact NLTK-style list): windows made of these and numbers say nothing about an item.
STOP_WORDS = """a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself yourselves true false none yes also may
might must shall one two three use using used following given find value values number numbers""".split()

_ANNOTATION = re.compile(rb"<<[^<>\n]{0,100}>>")
_IDENT = re.compile(r"v\d+")


@dataclass
class Grams:
    """N-grams of a batch of sequences: hash, sequence index and first word of each, in sequence order."""

    hashes: np.ndarray  # uint64
    seq: np.ndarray  # int64
    start: np.ndarray  # int64, index of the window's first word in `words`
    n: np.ndarray  # int64, words in the window (n, or the whole sequence when shorter)
    first: np.ndarray | None = (
        None  # uint64, key of the window's first two words (`first_pair`; text windows)
    )


@dataclass(frozen=True)
class Short:
    """The protected texts shorter than n (matched whole): their lengths, and the keys of their first two words
    (only record windows that start with one of those pairs are cut to those lengths)."""

    widths: tuple[int, ...] = ()
    first_words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # sorted


@functools.cache
def stop_hashes() -> np.ndarray:
    """The sorted hashes of the stop words and of `0` (words that are not content)."""
    words = _words_of(pa.array([" ".join(STOP_WORDS + ["0"])]))[0]
    return np.unique(words.hashes)


def _words_of(values: pa.Array) -> tuple[Words, np.ndarray, np.ndarray]:
    """(folded words, byte starts, byte ends) of lower-cased text; GSM8K annotations dropped."""
    b, offsets = _bytes(values)
    starts, ends = _split(b, offsets, True, False)
    if len(starts) and (b == ord("<")).any():
        drop = np.zeros(len(b) + 1, dtype=np.int64)
        raw = b.tobytes()
        for m in _ANNOTATION.finditer(raw):
            drop[m.start()] += 1
            drop[m.end()] -= 1
        inside = np.cumsum(drop)[:-1] > 0
        keep = ~inside[starts]
        starts, ends = starts[keep], ends[keep]
    seq = offsets_after(offsets, starts, ends)
    fb, fs, fe = _fold_digits(b, starts, ends)
    return _words(fb, fs, fe, seq), starts, ends


def windows(
    hashes: np.ndarray,
    words: Words,
    n: int,
    content: np.ndarray | None,
    min_content: int,
    short: Short | None = None,
) -> Grams:
    """64-bit hashes of the n-word windows of each sequence (a sequence shorter than n: one window, all of it),
    and, for `short` protected texts (matched whole), of every window of their lengths that starts with one of
    their first words. A window's hash is a polynomial of its word hashes from prefix sums, so any width costs
    a few array operations."""
    m = len(hashes)
    lengths = words.ends - words.starts
    if m == 0:
        z = np.zeros(0, dtype=np.int64)
        return Grams(np.zeros(0, dtype=U64), z, z, z)
    seq_of = np.repeat(np.arange(len(lengths)), lengths)
    i = np.arange(m)
    whole = lengths[seq_of] < n  # a sequence shorter than n is one window
    starts = [np.flatnonzero((i + n <= words.ends[seq_of]) | ((i == words.starts[seq_of]) & whole))]
    widths = [np.where(whole[starts[0]], lengths[seq_of[starts[0]]], n)]
    key = first_pair(hashes, words.ends[seq_of])
    if short is not None and short.widths and len(short.first_words):
        pos = np.minimum(np.searchsorted(short.first_words, key), len(short.first_words) - 1)
        cand = np.flatnonzero(short.first_words[pos] == key)
    else:
        cand = np.zeros(0, dtype=np.int64)
    for w in short.widths if len(cand) else ():
        at = cand[(cand + w <= words.ends[seq_of[cand]]) & (lengths[seq_of[cand]] > w)]
        starts.append(at)
        widths.append(np.full(len(at), w, dtype=np.int64))
    idx, width = np.concatenate(starts), np.concatenate(widths)
    if content is not None and min_content > 0:
        cs = np.concatenate(([0], np.cumsum(content)))
        keep = (cs[idx + width] - cs[idx]) >= min_content
        idx, width = idx[keep], width[keep]
    pow_, ipow = _powers(m + 1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([U64(0)], np.cumsum(hashes * pow_[:m])))
        h = mix64((prefix[idx + width] - prefix[idx]) * ipow[idx] + width.astype(U64) * _K[1])
    return Grams(h, seq_of[idx], idx, width, key[idx])


def first_pair(hashes: np.ndarray, end_of: np.ndarray) -> np.ndarray:
    """A key of each word and the next one in its sequence (the word alone at a sequence's end): the filter on
    where a short protected text can start."""
    nxt = np.zeros(len(hashes), dtype=U64)
    inside = np.arange(len(hashes)) + 1 < end_of
    nxt[inside] = hashes[1:][inside[:-1]] if len(hashes) else nxt[inside]
    with np.errstate(over="ignore"):
        return hashes * _K[2] + nxt


def text_grams(
    values: pa.Array, n: int, min_content: int, short: Short | None = None
) -> tuple[Grams, np.ndarray, np.ndarray]:
    """(n-grams, byte start and end of every word) of a batch of texts."""
    words, bstart, bend = _words_of(pc.utf8_lower(values))
    stop = stop_hashes()
    at = np.minimum(np.searchsorted(stop, words.hashes), len(stop) - 1)
    content = stop[at] != words.hashes
    return windows(words.hashes, words, n, content, min_content, short), bstart, bend


def code_grams(token_lists: list[list[str]], n: int) -> Grams:
    """n-token windows of each token list, identifiers numbered inside each window (a list shorter than n is
    one window)."""
    lengths = np.array([len(t) for t in token_lists], dtype=np.int64)
    flat = [t for toks in token_lists for t in toks]
    m = len(flat)
    if m == 0:
        z = np.zeros(0, dtype=np.int64)
        return Grams(np.zeros(0, dtype=U64), z, z, z)
    ident = np.array([int(t[1:]) if _IDENT.fullmatch(t) else -1 for t in flat], dtype=np.int64)
    tok = _token_hashes([t if i < 0 else "v" for t, i in zip(flat, ident.tolist(), strict=True)])
    ends = np.cumsum(lengths)
    seq_of = np.repeat(np.arange(len(lengths)), lengths)
    end_of = ends[seq_of]
    i = np.arange(m)
    acc = np.zeros(m, dtype=U64)
    with np.errstate(over="ignore"):
        for k in range(n):
            j = np.minimum(i + k, m - 1)
            inside = (i + k) < end_of
            g = ident[j]
            local = np.full(m, k, dtype=np.int64)
            for p in range(k - 1, -1, -1):  # ends on the first position of the window holding the same name
                local = np.where((ident[np.minimum(i + p, m - 1)] == g) & (g >= 0), p, local)
            value = np.where(g >= 0, mix64(U64(0x5851F42D4C957F2D) + local.astype(U64)), tok[j])
            acc[inside] += value[inside] * _K[k % len(_K)] + U64(k)
        short = lengths[seq_of] < n
        width = np.where(short, lengths[seq_of], n)
        h = mix64(acc + width.astype(U64) + U64(0xC0DE))
    valid = (i + n <= end_of) | ((i == (ends - lengths)[seq_of]) & short)
    idx = np.flatnonzero(valid)
    return Grams(h[idx], seq_of[idx], idx, width[idx])


def _token_hashes(tokens: list[str]) -> np.ndarray:
    """One 64-bit hash per token (the caller spells every identifier `v`: its identity is the window-local
    number)."""
    words = word_hashes(pa.array([" ".join(tokens)], pa.string()), text=False, fold_digits=False)
    return words.hashes


def char_offsets(text: str) -> np.ndarray:
    """Byte offset -> character offset table of a string's UTF-8 encoding (length bytes + 1)."""
    b = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    starts_char = (b & 0xC0) != 0x80
    return np.concatenate(([0], np.cumsum(starts_char))).astype(np.int64)
