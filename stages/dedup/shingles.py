"""What dedup compares: per record, the text of the counted turns, its exact key and its shingle hashes.

Everything works on a whole batch of records at once, in numpy over the UTF-8 bytes of an Arrow string array
(no Python object per word or shingle): this is where a MinHash pipeline spends its time (datatrove spends ~94% of
its signature time in spaCy's tokeniser; datasketch's loop hashes each shingle with SHA-1 in Python).

Text normalisation (near duplicates): Unicode lower-casing (Arrow's `utf8_lower`); word characters are ASCII
letters, digits and `_` and every non-ASCII character except the common Unicode punctuation (U+00A0-U+00BF, the
General Punctuation block U+2000-U+206F with its curly quotes, dashes and ellipsis, and CJK punctuation
U+3000-U+303F); everything else separates words; every run of ASCII digits becomes one `0`, so a GSM8K-style
problem with its numbers changed shingles the same. Text without spaces (Chinese, Japanese) is one word per run.

Words are hashed with a polynomial hash over their bytes (prefix sums mod 2^64, then the splitmix64 finaliser),
shingles (`n` consecutive words of one sequence; a sequence shorter than `n` is one shingle) by an
order-sensitive combination of their word hashes, reduced to 32 bits like datasketch's `sha1_hash32`. Code
blocks are shingled as token sequences (`code_tokens.py`) with their own `n`.

The exact key is an order-sensitive 64-bit hash of the record's words (case and punctuation folded as
configured; digits are not folded) or, without whitespace folding, of its bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.clean.text import fenced_blocks, looks_like_code, split_fences
from stages.dedup.code_tokens import code_tokens
from stages.dedup.config import DedupConfig

U64 = np.uint64
_P = U64(0x100000001B3)  # FNV prime: odd, so it has an inverse mod 2^64
_P_INV = U64(pow(int(_P), -1, 1 << 64))
# Multipliers of the shingle combination, one per position (odd 64-bit constants from xxhash/murmur).
_K = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0x85EBCA77C2B2AE63,
        0x27D4EB2F165667C5,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
    ],
    dtype=np.uint64,
)

_WORD = np.zeros(256, dtype=bool)
for _c in b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_":
    _WORD[_c] = True
_WORD[0x80:] = True  # non-ASCII bytes: word characters unless part of the punctuation below
_PUNCT = np.zeros(256, dtype=bool)
_PUNCT[[c for c in range(0x21, 0x80) if not _WORD[c]]] = True  # ASCII punctuation and symbols

_POW = np.ones(1, dtype=np.uint64)  # _POW[j] = P^j, _IPOW[j] = P^-j (mod 2^64); grown on demand, per process
_IPOW = np.ones(1, dtype=np.uint64)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _POW, _IPOW
    if len(_POW) < n:
        size = max(n, 2 * len(_POW), 1 << 20)
        with np.errstate(over="ignore"):
            _POW = np.cumprod(np.full(size, _P, dtype=np.uint64))
            _IPOW = np.cumprod(np.full(size, _P_INV, dtype=np.uint64))
        _POW = np.concatenate(([U64(1)], _POW[:-1]))
        _IPOW = np.concatenate(([U64(1)], _IPOW[:-1]))
    return _POW, _IPOW


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over all 64 output bits (a new array)."""
    x = x ^ (x >> U64(30))
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


# ---- counted text ----------------------------------------------------------------------------------------------


def counted_text(table: pa.Table, turns: str) -> pa.Array:
    """One string per record: the contents of the counted turns joined by newlines (see `DedupConfig.turns`)."""
    return _turns(table, turns)[0]


def _turns(table: pa.Table, turns: str) -> tuple[pa.Array, pa.Array]:
    """(counted text, final answer or null) per record."""
    msgs = table.column("messages").combine_chunks()
    if isinstance(msgs, pa.ChunkedArray):  # an empty table
        msgs = pa.concat_arrays(msgs.chunks) if msgs.chunks else pa.array([], msgs.type)
    offsets = msgs.offsets.to_numpy().astype(np.int64)
    flat = msgs.values.slice(offsets[0], offsets[-1] - offsets[0])
    offsets -= offsets[0]
    n = len(msgs)
    role = flat.field("role")
    rec = np.repeat(np.arange(n), np.diff(offsets))
    pos = np.arange(len(flat))
    is_user = pc.equal(role, "user").to_numpy(zero_copy_only=False)
    is_asst = pc.equal(role, "assistant").to_numpy(zero_copy_only=False)
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, rec[is_asst], pos[is_asst])
    is_final = pos == last[rec]
    if turns == "all":
        sel = np.ones(len(flat), dtype=bool)
    elif turns == "user":
        sel = is_user
    elif turns == "final":
        sel = is_final
    else:
        sel = is_user | is_final
    idx = np.flatnonzero(sel)
    counts = np.bincount(rec[idx], minlength=n)
    list_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    contents = flat.field("content").take(pa.array(idx))
    lists = pa.ListArray.from_arrays(pa.array(list_offsets), contents)
    final = flat.field("content").take(pa.array(np.where(last >= 0, last, 0)))
    final = pc.if_else(pa.array(last >= 0), final, pa.nulls(n, pa.string())) if n else final
    return pc.fill_null(pc.binary_join(lists, "\n"), ""), final


# ---- bytes -> word hashes --------------------------------------------------------------------------------------


@dataclass
class Words:
    """The words of a batch of sequences: hashes in order, and each sequence's [start, end) word range."""

    hashes: np.ndarray  # uint64
    starts: np.ndarray  # int64, per sequence
    ends: np.ndarray  # int64, per sequence


def _bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets from 0) of a string array."""
    values = values.cast(pa.large_string())
    _, offs_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return data, offsets - offsets[0]


def _unicode_punct(b: np.ndarray) -> np.ndarray:
    """Mask of the bytes of U+00A0-U+00BF, U+2000-U+206F and U+3000-U+303F (Latin-1, general and CJK
    punctuation: nbsp, guillemets, curly quotes, dashes, ellipsis, ideographic full stop ...)."""
    mask = np.zeros(len(b), dtype=bool)
    if len(b) < 2:
        return mask
    b0, b1 = b[:-1], b[1:]
    two = (b0 == 0xC2) & (b1 >= 0xA0) & (b1 <= 0xBF)
    three = ((b0 == 0xE2) & ((b1 == 0x80) | (b1 == 0x81))) | ((b0 == 0xE3) & (b1 == 0x80))
    lead = np.flatnonzero(two | three)
    mask[lead] = True
    mask[lead + 1] = True
    lead3 = np.flatnonzero(three)
    lead3 = lead3[lead3 + 2 < len(b)]
    mask[lead3 + 2] = True
    return mask


def word_hashes(values: pa.Array, *, text: bool, fold_digits: bool, punct_tokens: bool = False) -> Words:
    """Hash the words of each string. `text`: words are runs of word characters (see the module docstring);
    otherwise (code token strings) words are the space-separated tokens as they are. `fold_digits`: each run of
    ASCII digits counts as `0`. `punct_tokens`: in text, each punctuation character is a word of its own
    instead of a separator."""
    b, offsets = _bytes(values)
    starts, ends = _split(b, offsets, text, punct_tokens)
    seq = offsets_after(offsets, starts, ends)  # word ranges per sequence: folding keeps the words
    if fold_digits:
        b, starts, ends = _fold_digits(b, starts, ends)
    return _words(b, starts, ends, seq)


def text_words(values: pa.Array) -> tuple[Words, Words]:
    """(words as they are, words with digit runs folded) of text: one split, two hashings (the exact key uses the
    first, the shingles the second)."""
    b, offsets = _bytes(values)
    starts, ends = _split(b, offsets, True, False)
    seq = offsets_after(offsets, starts, ends)
    plain = _words(b, starts, ends, seq)
    fb, fs, fe = _fold_digits(b, starts, ends)
    folded = plain if fb is b else _words(fb, fs, fe, seq)
    return plain, folded


def offsets_after(offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence's [first word, end word) range."""
    return (
        np.searchsorted(starts, offsets[:-1], side="left").astype(np.int64),
        np.searchsorted(starts, offsets[1:], side="left").astype(np.int64),
    )


def _split(
    b: np.ndarray, offsets: np.ndarray, text: bool, punct_tokens: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges [start, end) of the words; no word crosses a sequence boundary."""
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if text:
        word = _WORD[b] & ~_unicode_punct(b)
        single = _PUNCT[b] if punct_tokens else None
        if single is not None:
            word |= single
    else:
        word = (b != 0x20) & (b != 0x0A) & (b != 0x09)
        single = None
    first = np.zeros(len(b) + 1, dtype=bool)  # a sequence starts here
    first[offsets[:-1]] = True
    first = first[: len(b)]
    prev_word = np.concatenate(([False], word[:-1]))
    start = word & (~prev_word | first)
    if single is not None:
        start |= word & (single | np.concatenate(([False], single[:-1])))
    starts = np.flatnonzero(start)
    nxt_start = np.concatenate((start[1:], [True]))
    nxt_word = np.concatenate((word[1:], [False]))
    ends = np.flatnonzero(word & (~nxt_word | nxt_start)) + 1
    return starts, ends


def _fold_digits(
    b: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bytes with every run of ASCII digits inside a word turned into one `0`, and the words' new ranges
    (the same words: b itself is returned when there is no digit)."""
    digit = (b >= 0x30) & (b <= 0x39)
    if not digit.any():
        return b, starts, ends
    drop = digit.copy()
    drop[1:] &= digit[:-1]
    drop[0] = False
    drop[starts] = False  # a run never continues across a word start
    folded = np.where(digit, np.uint8(0x30), b)
    if not drop.any():
        return folded, starts, ends
    cdrop = np.concatenate(([0], np.cumsum(drop)))
    return folded[~drop], starts - cdrop[starts], ends - cdrop[ends]


def _words(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, seq: tuple[np.ndarray, np.ndarray]) -> Words:
    if len(starts) == 0:
        return Words(np.zeros(0, dtype=np.uint64), seq[0], seq[1])
    pow_, ipow = _powers(len(b) + 1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([U64(0)], np.cumsum(b.astype(np.uint64) * pow_[: len(b)])))
        h = (prefix[ends] - prefix[starts]) * ipow[starts]
        h = mix64(h + (ends - starts).astype(np.uint64))
    return Words(h, seq[0], seq[1])


def sequence_keys(words: Words) -> np.ndarray:
    """An order-sensitive 64-bit key per sequence from its word hashes (0 for an empty sequence)."""
    n_seq = len(words.starts)
    if len(words.hashes) == 0:
        return np.zeros(n_seq, dtype=np.uint64)
    seq_of = np.repeat(np.arange(n_seq), words.ends - words.starts)
    pos = np.arange(len(words.hashes)) - words.starts[seq_of]
    with np.errstate(over="ignore"):
        vals = mix64(words.hashes + pos.astype(np.uint64) * _K[0])
        cs = np.concatenate(([U64(0)], np.cumsum(vals)))
        return cs[words.ends] - cs[words.starts]


def byte_keys(values: pa.Array) -> np.ndarray:
    """A 64-bit polynomial hash of each string's bytes."""
    b, offsets = _bytes(values)
    pow_, ipow = _powers(len(b) + 1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([U64(0)], np.cumsum(b.astype(np.uint64) * pow_[: len(b)])))
        h = (prefix[offsets[1:]] - prefix[offsets[:-1]]) * ipow[offsets[:-1]]
        return mix64(h + np.diff(offsets).astype(np.uint64))


def shingle_hashes(words: Words, ngram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(32-bit shingle hashes as uint64, sequence index of each): the `ngram[s]`-word windows of each sequence
    s; a non-empty sequence shorter than its n is one shingle."""
    m = len(words.hashes)
    n_seq = len(words.starts)
    if m == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    lengths = words.ends - words.starts
    seq_of = np.repeat(np.arange(n_seq), lengths)
    end_of = words.ends[seq_of]
    n_of = ngram[seq_of]
    i = np.arange(m)
    acc = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(int(ngram.max())):
            j = i + k
            ok = (j < end_of) & (k < n_of)
            acc[ok] += words.hashes[j[ok]] * _K[k % len(_K)] + U64(k)
        valid = (i + n_of <= end_of) | ((i == words.starts[seq_of]) & (lengths[seq_of] < n_of))
        hv = mix64(acc[valid]) >> U64(32)
    return hv, seq_of[valid]


# Identifiers are compared as one placeholder: code_tokens numbers them by first appearance (v0, v1, ...), which
# is rename-proof but lets one deleted or inserted identifier renumber every later one (a one-word edit of a code
# answer then looked 70% different); the token n-grams around them keep the structure.
_POSITIONAL = re.compile(r"v\d+")
_ID = "v"


# ---- a batch of records ----------------------------------------------------------------------------------------


@dataclass
class Features:
    """Per record: exact key, compared length, and shingle hashes grouped by record."""

    exact: np.ndarray  # uint64
    length: np.ndarray  # int64, characters of the counted turns
    shingles: np.ndarray  # uint64 holding 32-bit values, record 0's first
    offsets: np.ndarray  # int64, n + 1: record r's shingles are shingles[offsets[r]:offsets[r + 1]]
    code_records: int  # records shingled with code tokens
    code_languages: dict[str, int]  # code blocks by language ("other": the generic lexer)


def _is_code(table: pa.Table, texts: pa.Array) -> np.ndarray:
    fenced = pc.or_(pc.match_substring(texts, "```"), pc.match_substring(texts, "~~~"))
    kind = pc.match_substring(table.column("meta"), '"kind":"code"')
    return pc.fill_null(pc.or_(fenced, kind), False).to_numpy(zero_copy_only=False)


def _unfenced_code(texts: pa.Array, final: pa.Array, candidates: np.ndarray) -> np.ndarray:
    """Records whose final answer, the last counted turn, is unfenced code (CodeAlpaca and GPTeacher write code
    answers without fences): `looks_like_code`, tried only on multi-line answers with a bracket or `=`."""
    cheap = pc.and_(
        pc.match_substring(final, "\n"),
        pc.match_substring_regex(final, r"[({=]"),
    )
    out = np.zeros(len(texts), dtype=bool)
    mask = pc.fill_null(cheap, False).to_numpy(zero_copy_only=False) & candidates
    for r in np.flatnonzero(mask):
        answer, text = final[int(r)].as_py(), texts[int(r)].as_py()
        out[r] = text.endswith(answer) and looks_like_code(answer)
    return out


def features(table: pa.Table, cfg: DedupConfig) -> Features:
    """Exact keys, lengths and shingles of a table of canonical records."""
    texts, final = _turns(table, cfg.turns)
    n = len(texts)
    length = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ex = cfg.exact
    lowered = pc.utf8_lower(texts)
    folded = lowered if ex.case else texts
    shared = ex.case and ex.whitespace and ex.punctuation  # the exact key's words are the shingles' words
    if shared:
        plain, near_words = text_words(lowered)
        exact = sequence_keys(plain)
    elif ex.whitespace:
        exact = sequence_keys(
            word_hashes(folded, text=True, fold_digits=False, punct_tokens=not ex.punctuation)
        )
    else:
        exact = byte_keys(folded)
    code_mask = _is_code(table, texts) if cfg.code.enabled and n else np.zeros(n, dtype=bool)
    unfenced = np.zeros(n, dtype=bool)
    if cfg.code.enabled and cfg.code.detect_unfenced and cfg.turns != "user" and n:
        unfenced = _unfenced_code(texts, final, ~code_mask)
        code_mask |= unfenced
    prose = lowered
    code_seqs: list[str] = []
    code_rec: list[int] = []
    languages: dict[str, int] = {}
    if code_mask.any():
        allowed = frozenset(cfg.code.languages)
        prose_list = lowered.to_pylist()
        metas = table.column("meta")
        for r in np.flatnonzero(code_mask):
            text = texts[r].as_py()
            blocks = [(b.info, b.body) for b in fenced_blocks(text)] if not unfenced[r] else []
            if unfenced[r]:  # the final answer is the code; the turns before it are prose
                answer = final[int(r)].as_py()
                blocks = [("", answer)]
                prose_list[r] = text[: len(text) - len(answer)].lower()
            elif blocks:
                prose_list[r] = split_fences(text)[0].lower()
            else:  # a `code` record without fences: the counted text is the code
                info = _meta_language(metas[int(r)].as_py())
                blocks = [(info, text)]
                prose_list[r] = ""
            for info, body in blocks:
                tokens, lang = code_tokens(body, info, allowed)
                languages[lang or "other"] = languages.get(lang or "other", 0) + 1
                if tokens:
                    code_seqs.append(" ".join(_ID if _POSITIONAL.fullmatch(t) else t for t in tokens))
                    code_rec.append(int(r))
        prose = pa.array(prose_list, pa.string())
        shared = False
    near = cfg.near
    words = near_words if shared else word_hashes(prose, text=True, fold_digits=True)
    hv, rec = shingle_hashes(words, np.full(n, near.ngram, dtype=np.int64))
    if code_seqs:
        code_words = word_hashes(pa.array(code_seqs, pa.string()), text=False, fold_digits=False)
        chv, cseq = shingle_hashes(code_words, np.full(len(code_seqs), cfg.code.ngram, dtype=np.int64))
        hv = np.concatenate((hv, chv))
        rec = np.concatenate((rec, np.asarray(code_rec, dtype=np.int64)[cseq]))
        order = np.argsort(rec, kind="stable")
        hv, rec = hv[order], rec[order]
    offsets = np.concatenate(([0], np.cumsum(np.bincount(rec, minlength=n)))).astype(np.int64)
    return Features(exact, length, hv, offsets, int(code_mask.sum()), languages)


def _meta_language(meta: str | None) -> str:
    if not meta:
        return ""
    import orjson

    value = orjson.loads(meta)
    return str(value.get("language") or value.get("lang") or "") if isinstance(value, dict) else ""
