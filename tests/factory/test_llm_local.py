"""The transformers backend on a tiny Llama and word-level tokenizer built here and saved with save_pretrained:
left padding, batching, n choices, seeds, token counts and the cache. Mechanics only: the model is random."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from factory.llm.client import ChatRequest, make_client  # noqa: E402
from factory.llm.config import BackendConfig  # noqa: E402
from tests.tiny_models import WORDS, build_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def backend(model_dir, **over) -> BackendConfig:
    return BackendConfig(**{"kind": "transformers", "model": str(model_dir), "device": "cpu", **over})


def prompts(k: int) -> list[ChatRequest]:
    # different lengths, so a batch needs padding
    return [ChatRequest(messages=(("user", " ".join(WORDS[: i + 1])),)) for i in range(k)]


def test_batched_left_padded_generation_equals_one_by_one(model_dir):
    batched = make_client(backend(model_dir, temperature=0, max_tokens=8, batch_size=4), None)
    single = make_client(backend(model_dir, temperature=0, max_tokens=8, batch_size=1), None)
    assert batched.tokenizer.padding_side == "left"
    a = batched.complete_all(prompts(7))
    b = single.complete_all(prompts(7))
    assert [r.texts for r in a] == [r.texts for r in b]
    assert all(r.error is None and len(r.texts) == 1 for r in a)
    assert batched.stats()["requests"] == 7


def test_token_counts_and_finish_reasons(model_dir):
    client = make_client(backend(model_dir, temperature=0, max_tokens=5, batch_size=3), None)
    results = client.complete_all(prompts(5))
    tok = client.tokenizer
    for request, result in zip(prompts(5), results, strict=True):
        text = tok.apply_chat_template(
            [{"role": "user", "content": request.messages[0][1]}], add_generation_prompt=True, tokenize=False
        )
        assert result.prompt_tokens == len(tok(text, add_special_tokens=False)["input_ids"])
        assert 1 <= result.completion_tokens <= 5
        if result.finish_reasons == ["length"]:
            assert result.completion_tokens == 5 and len(result.texts[0].split()) <= 5
    stats = client.stats()
    assert stats["prompt_tokens"] == sum(r.prompt_tokens for r in results)
    assert stats["completion_tokens"] == sum(r.completion_tokens for r in results)


def test_n_choices_and_seeds(model_dir):
    cfg = backend(model_dir, temperature=1.0, max_tokens=6, batch_size=2, seed=3)
    requests = [
        ChatRequest(messages=(("user", "hello world"),), n=4),
        ChatRequest(messages=(("user", "why"),), n=4),
    ]
    first = make_client(cfg, None).complete_all(requests)
    again = make_client(cfg, None).complete_all(requests)
    other = make_client(cfg, None).complete_all(
        [ChatRequest(messages=r.messages, n=4, params=(("seed", 4),)) for r in requests]
    )
    assert all(len(r.texts) == 4 and len(r.finish_reasons) == 4 for r in first)
    assert len(set(first[0].texts)) > 1  # sampled, not one choice repeated
    assert [r.texts for r in first] == [r.texts for r in again]  # same seed, same batch: same samples
    assert [r.texts for r in first] != [r.texts for r in other]
    assert all(r.completion_tokens <= 4 * 6 for r in first)


def test_greedy_with_n_repeats_one_decode(model_dir):
    client = make_client(backend(model_dir, temperature=0, max_tokens=4), None)
    (result,) = client.complete_all([ChatRequest(messages=(("user", "the cat"),), n=3)])
    assert len(result.texts) == 3 and len(set(result.texts)) == 1


def test_cache_answers_a_rerun(model_dir, tmp_path):
    cache = tmp_path / "llm.sqlite"
    first = make_client(backend(model_dir, max_tokens=4), cache)
    answers = first.complete_all(prompts(6))
    first.close()
    second = make_client(backend(model_dir, max_tokens=4, batch_size=2), cache)  # batch size: not in the key
    again = second.complete_all(prompts(6))
    second.close()
    assert [r.texts for r in again] == [r.texts for r in answers]
    assert all(r.cached for r in again)
    assert second.stats()["requests"] == 0 and second.stats()["cache_hits"] == 6


def test_stop_strings_cut_the_text(model_dir):
    client = make_client(backend(model_dir, temperature=0, max_tokens=8), None)
    (plain,) = client.complete_all([ChatRequest(messages=(("user", "the dog"),))])
    word = plain.texts[0].split()[-1]
    (cut,) = client.complete_all([ChatRequest(messages=(("user", "the dog"),), params=(("stop", [word]),))])
    assert cut.texts == [plain.texts[0][: plain.texts[0].find(word)]]
    assert cut.finish_reasons == ["stop"]


def test_generation_stops_at_a_stop_string(model_dir):
    """A row ends as soon as it holds a stop string, not at max_tokens (the text is cut before it)."""
    client = make_client(backend(model_dir, temperature=0, max_tokens=30, batch_size=2), None)
    requests = [ChatRequest(messages=(("user", "the dog"),)), ChatRequest(messages=(("user", "a cat"),))]
    plain = client.complete_all(requests)
    assert all(r.completion_tokens > 4 for r in plain)
    words = [r.texts[0].split() for r in plain]
    stops = [(("stop", [w[1]]),) for w in words]  # the second word: one row stops early, the other goes on
    cut = client.complete_all([ChatRequest(r.messages, params=stops[0]) for r in requests])
    first_at = words[0].index(words[0][1])
    assert cut[0].texts[0] == plain[0].texts[0][: plain[0].texts[0].find(words[0][1])]
    assert cut[0].finish_reasons == ["stop"] and cut[0].completion_tokens <= first_at + 2
    if words[0][1] not in plain[1].texts[0]:  # the other row never met the stop: it ran as before
        assert cut[1].texts == plain[1].texts and cut[1].completion_tokens == plain[1].completion_tokens


def test_plain_text_completion_has_no_chat_template(model_dir):
    client = make_client(backend(model_dir, temperature=0, max_tokens=5), None)
    (raw,) = client.complete_all([ChatRequest.completion("the dog")])
    (chat,) = client.complete_all([ChatRequest(messages=(("user", "the dog"),))])
    assert raw.error is None and raw.prompt_tokens == len(client.tokenizer("the dog")["input_ids"])
    assert raw.prompt_tokens < chat.prompt_tokens


def test_named_and_fallback_templates(model_dir, tmp_path):
    import shutil

    from factory.errors import UserError
    from factory.llm.local import TransformersClient

    bare = tmp_path / "no-template"
    shutil.copytree(model_dir, bare)
    tok = transformers.AutoTokenizer.from_pretrained(bare)
    tok.chat_template = None
    tok.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    assert not transformers.AutoTokenizer.from_pretrained(bare).chat_template
    with pytest.raises(UserError, match="has no chat template"):
        TransformersClient(backend(bare), None)
    fallback = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    client = TransformersClient(backend(bare, max_tokens=2), None, fallback_template=fallback)
    assert client._prompt(ChatRequest(messages=(("user", "the cat"),))) == "the cat "
    named = TransformersClient(
        backend(model_dir), None, chat_template=fallback
    )  # replaces the tokenizer's own
    assert named._prompt(ChatRequest(messages=(("user", "a dog"),))) == "a dog "
