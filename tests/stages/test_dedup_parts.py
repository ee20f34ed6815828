"""The dedup stage's pure parts: normalisation and shingles, datasketch-equal signatures, LSH parameters,
union-find and the chaining guard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from factory.records import RECORD_SCHEMA
from stages.dedup.clusters import choose_keepers, components, size_histogram
from stages.dedup.config import DedupConfig
from stages.dedup.minhash import EMPTY, band_keys, lsh_params, permutations, signatures, similarity
from stages.dedup.shingles import counted_text, features, shingle_hashes, word_hashes

WORDS = (
    "the quick brown fox jumps over the lazy dog while a curious cat watches from the old wooden fence and "
    "the farmer counts his sheep before the evening rain begins to fall across the quiet green valley"
).split()


def table(*conversations: list[tuple[str, str]], meta: str = '{"kind":"chat"}') -> pa.Table:
    rows = [
        {
            "id": str(i),
            "source": "s",
            "messages": [{"role": r, "content": c} for r, c in conv],
            "meta": meta,
            "origin": f"x:{i}",
        }
        for i, conv in enumerate(conversations)
    ]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def shingle_set(text: str, n: int = 5) -> set[int]:
    words = word_hashes(pc.utf8_lower(pa.array([text])), text=True, fold_digits=True)
    hv, _ = shingle_hashes(words, np.array([n]))
    return set(hv.tolist())


# ---- normalisation and shingles -------------------------------------------------------------------------------


def test_case_punctuation_whitespace_and_digits_fold_to_the_same_shingles():
    text = "The Quick brown fox, born in 2019, jumps over the lazy dog... twice!"
    variants = [
        "the quick brown fox born in 2019 jumps over the lazy dog twice",
        "THE QUICK BROWN FOX — born in 1987 — jumps over the lazy dog; twice",
        "The  quick\n\nbrown fox,\tborn in 7, jumps over “the” lazy dog… twice?",
    ]
    for v in variants:
        assert shingle_set(v) == shingle_set(text), v
    assert shingle_set("the quick brown fox born in 2019 jumps over the lazy cat twice") != shingle_set(text)


def test_word_hashes_do_not_depend_on_position_in_the_batch():
    texts = ["alpha beta gamma delta epsilon", "x " * 37 + "alpha beta gamma delta epsilon"]
    words = word_hashes(pa.array(texts), text=True, fold_digits=True)
    first = words.hashes[words.starts[0] : words.ends[0]]
    second = words.hashes[words.ends[1] - 5 : words.ends[1]]
    assert first.tolist() == second.tolist()
    assert len(set(first.tolist())) == 5


def test_short_text_is_one_shingle_and_empty_text_none():
    words = word_hashes(
        pa.array(["two words", "", "one two three four five six"]), text=True, fold_digits=True
    )
    hv, seq = shingle_hashes(words, np.array([5, 5, 5]))
    assert seq.tolist() == [0, 2, 2]
    assert (hv < 2**32).all()


def test_counted_turns_default_to_user_turns_and_final_answer():
    t = table(
        [("system", "be nice"), ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")],
        [("user", "only a question")],
    )
    assert counted_text(t, "user_and_final").to_pylist() == ["q1\nq2\na2", "only a question"]
    assert counted_text(t, "all").to_pylist()[0] == "be nice\nq1\na1\nq2\na2"
    assert counted_text(t, "final").to_pylist() == ["a2", ""]
    assert counted_text(t, "user").to_pylist() == ["q1\nq2", "only a question"]


def test_exact_key_folds_case_whitespace_punctuation_but_not_digits():
    t = table(
        [("user", "What is 2+2?"), ("assistant", "It is 4.")],
        [("user", "what is 2 + 2"), ("assistant", "it   is 4")],
        [("user", "What is 2+2?"), ("assistant", "It is 5.")],
    )
    f = features(t, DedupConfig())
    assert f.exact[0] == f.exact[1] != f.exact[2]
    strict = DedupConfig.model_validate({"exact": {"punctuation": False, "case": False}})
    g = features(t, strict)
    assert g.exact[0] != g.exact[1]


def test_code_blocks_are_shingled_by_tokens_so_renames_match():
    bubble = "def sort(arr):\n    # bubble\n    for i in range(len(arr)):\n        arr[i] = arr[i]\n    return arr\n"
    renamed = bubble.replace("arr", "nums").replace("# bubble", "# sorts in place")
    t = table(
        [("user", "Sort a list."), ("assistant", f"Here:\n```python\n{bubble}```")],
        [("user", "Sort a list."), ("assistant", f"Here:\n```python\n{renamed}```")],
    )
    f = features(t, DedupConfig())
    assert f.code_records == 2 and f.code_languages == {"python": 2}
    s0 = set(f.shingles[f.offsets[0] : f.offsets[1]].tolist())
    s1 = set(f.shingles[f.offsets[1] : f.offsets[2]].tolist())
    assert s0 == s1
    plain = features(t, DedupConfig.model_validate({"code": {"enabled": False}}))
    p0 = set(plain.shingles[plain.offsets[0] : plain.offsets[1]].tolist())
    p1 = set(plain.shingles[plain.offsets[1] : plain.offsets[2]].tolist())
    assert len(p0 & p1) / len(p0 | p1) < 0.5  # as text, the rename hides the duplicate


# ---- signatures and LSH ---------------------------------------------------------------------------------------


def test_signatures_equal_datasketch_minhash_of_the_same_shingle_hashes():
    rng = np.random.default_rng(0)
    counts = [0, 1, 7, 200, 3000]
    hv = rng.integers(0, 2**32, size=sum(counts), dtype=np.uint64)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    a, b = permutations(128, 7)
    sig = signatures(hv, offsets, a, b)
    assert sig.shape == (5, 128) and sig.dtype == np.uint32
    assert (sig[0] == EMPTY).all()
    for r in range(1, 5):
        m = MinHash(num_perm=128, seed=7, hashfunc=int)
        m.update_batch(hv[offsets[r] : offsets[r + 1]].tolist())
        assert (m.hashvalues == sig[r]).all()
        lean = LeanMinHash(seed=7, hashvalues=sig[r], scheme="affine32")
        assert lean.jaccard(LeanMinHash(m)) == 1.0


def test_similarity_estimates_jaccard():
    a, b = permutations(128, 1)
    x = np.arange(1000, dtype=np.uint64) * 2654435761 % 2**32
    y = np.concatenate((x[:900], x[-100:] + 1))  # 900 shared of 1100
    sig = signatures(np.concatenate((x, y)), np.array([0, 1000, 2000]), a, b)
    est = similarity(sig[:1], sig[1:])[0]
    assert abs(est - 900 / 1100) < 0.1


def test_band_and_row_choice_is_datasketchs():
    for threshold, weights in [(0.8, (0.5, 0.5)), (0.8, (0.05, 0.95)), (0.7, (0.3, 0.7))]:
        p = lsh_params(threshold, 128, weights)
        lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=weights)
        assert (p.bands, p.rows) == (lsh.b, lsh.r)
    p = lsh_params(0.8, 128, (0.05, 0.95))
    assert (p.bands, p.rows) == (16, 8)
    assert p.p_at_threshold > 0.94 and p.false_negative < 0.002
    assert lsh_params(0.8, 128, (0.5, 0.5), bands=4, rows=4).bands == 4


def test_band_keys_match_exactly_when_band_rows_match():
    rng = np.random.default_rng(1)
    sig = rng.integers(0, 2**32, size=(3, 16), dtype=np.uint32)
    sig[1] = sig[0]
    sig[1, 5] += 1  # differs in band 1 (rows 4-7) only
    keys = band_keys(sig, 4, 4)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert (keys[0, 2:] == keys[1, 2:]).all()
    assert len(np.intersect1d(keys[:, 0], keys[:, 1])) == 0  # bands never share keys


# ---- clusters --------------------------------------------------------------------------------------------------


def test_components_joins_chains_and_separates_groups():
    u = np.array([10, 11, 12, 30, 50, 40])
    v = np.array([11, 12, 13, 31, 40, 30])
    nodes, root = components(u, v)
    groups = {}
    for n, r in zip(nodes.tolist(), root.tolist(), strict=True):
        groups.setdefault(r, []).append(n)
    assert sorted(groups.values()) == [[10, 11, 12, 13], [30, 31, 40, 50]]


def test_components_of_a_long_reversed_chain():
    n = 5000
    u = np.arange(n - 1)[::-1]
    nodes, root = components(u, u + 1)
    assert len(nodes) == n and (root == 0).all()


def test_chaining_guard_keeps_a_record_that_is_far_from_the_kept_one():
    # A~B, B~C, A and C far apart; A is ranked first: B goes, C stays (its own keeper)
    sims = {(0, 1): 0.9, (1, 2): 0.9, (0, 2): 0.5}

    def sim(x, y):
        return sims[(min(x, y), max(x, y))]

    def similar_to(members, keeper):
        return np.array([sim(int(m), keeper) for m in members])

    nodes = np.array([0, 1, 2])
    d = choose_keepers(nodes, np.zeros(3, dtype=np.int64), np.array([0, 1, 2]), similar_to, 0.8)
    removed, kept, s = d.arrays()
    assert removed.tolist() == [1] and kept.tolist() == [0] and s.tolist() == [0.9]
    assert np.concatenate(d.extra_keepers).tolist() == [2]
    # B ranked first: it is similar to both, both go
    d = choose_keepers(nodes, np.zeros(3, dtype=np.int64), np.array([1, 0, 2]), similar_to, 0.8)
    removed, kept, _ = d.arrays()
    assert sorted(removed.tolist()) == [0, 2] and set(kept.tolist()) == {1}


def test_pairs_are_decided_in_bulk_by_rank():
    nodes = np.array([1, 2, 3, 4])
    root = np.array([1, 1, 3, 3])
    rank = np.array([1, 0, 0, 1])  # 2 beats 1; 3 beats 4
    d = choose_keepers(nodes, root, rank, None, 0.8, lambda x, y: np.array([0.9, 0.7]))
    removed, kept, _ = d.arrays()
    assert removed.tolist() == [1] and kept.tolist() == [2]  # the 0.7 pair is not a duplicate
    assert np.concatenate(d.extra_keepers).tolist() == [4]


def test_size_histogram():
    assert size_histogram(np.array([1, 2, 2, 3, 7, 150, 5000])) == {
        "2": 2,
        "3": 1,
        "6-10": 1,
        "101-1000": 1,
        ">1000": 1,
    }


@pytest.mark.parametrize("bad", [{"bands": 4}, {"bands": 20, "rows": 10}, {"weights": [0, 0]}])
def test_bad_lsh_settings_are_refused(bad):
    with pytest.raises(ValueError):
        DedupConfig.model_validate({"near": bad})


def test_a_code_record_in_the_batch_does_not_change_other_records_shingles():
    prose = [
        ("user", "Tell me about 1990 and 2024."),
        ("assistant", "In 1990 things were 3 times cheaper than 2024."),
    ]
    code = [("user", "Code?"), ("assistant", "```python\nx = 1\n```")]
    alone = features(table(prose), DedupConfig())
    mixed = features(table(code, prose), DedupConfig())
    assert mixed.code_records == 1
    assert alone.shingles.tolist() == mixed.shingles[mixed.offsets[1] : mixed.offsets[2]].tolist()
    assert alone.exact[0] == mixed.exact[1]


def test_word_hashes_keep_sequence_ranges_when_digits_fold():
    words = word_hashes(pa.array(["a 123 b", "c 45 d e"]), text=True, fold_digits=True)
    assert words.starts.tolist() == [0, 3] and words.ends.tolist() == [3, 7]


def test_one_edited_identifier_does_not_renumber_the_rest_of_the_code():
    body = "def f(a, b):\n    c = a + b\n    d = c * a\n    e = d - b\n    return e + c + d\n"
    edited = body.replace("c = a + b", "c = q + b")  # a new name appears first: positional numbers shift
    t = table(
        [("user", "Write it."), ("assistant", f"```python\n{body}```")],
        [("user", "Write it."), ("assistant", f"```python\n{edited}```")],
    )
    f = features(t, DedupConfig())
    s0 = set(f.shingles[f.offsets[0] : f.offsets[1]].tolist())
    s1 = set(f.shingles[f.offsets[1] : f.offsets[2]].tolist())
    assert s0 == s1
