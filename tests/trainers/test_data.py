"""Training data: reading mix/ShareGPT/Alpaca files, chat formatting and the label mask, token by token.

The tokenizer is word-level (whitespace split) with every template marker as a special token, so each token is
one visible piece and the expected masks can be written out: learned tokens are shown in [brackets].
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.errors import InputError, UserError
from tests.tiny_models import TEMPLATE, WORDS
from trainers.data import (
    ALPACA_SYSTEM,
    IGNORE,
    TEMPLATES,
    add_marker_tokens,
    encode,
    encode_all,
    ensure_pad,
    read_conversations,
    resolve_splits,
    resolve_template,
)

pytest.importorskip("transformers")

MARKERS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
]
EXTRA_WORDS = ["system", "user", "assistant", "###", "Instruction:", "Response:", "You", "are", "helpful"]


def make_tokenizer(chat_template: str | None = TEMPLATE, pad: str | None = "<pad>", markers=tuple(MARKERS)):
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", *markers]
    words = list(dict.fromkeys(WORDS + EXTRA_WORDS + ALPACA_SYSTEM.split() + ["assistant."]))
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token=pad
    )
    fast.chat_template = chat_template
    return fast


SINGLE = [{"role": "user", "content": "what is the cat"}, {"role": "assistant", "content": "a red cat"}]
MULTI = [
    {"role": "system", "content": "hello"},
    {"role": "user", "content": "what is the cat"},
    {"role": "assistant", "content": "a red cat"},
    {"role": "user", "content": "why"},
    {"role": "assistant", "content": "big dog"},
]


def marked(tok, enc) -> str:
    """The tokens, learned ones in brackets (and the labels checked to be the token ids)."""
    out = []
    for tid, label in zip(enc["input_ids"], enc["labels"], strict=True):
        piece = tok.convert_ids_to_tokens(tid)
        assert label in (tid, IGNORE)
        out.append(f"[{piece}]" if label == tid else piece)
    return " ".join(out)


H = "<|start_header_id|>"
E = "<|end_header_id|>"
SYS = " ".join(ALPACA_SYSTEM.split())
EXPECTED = {
    ("auto", "single"): "<|user|> what is the cat <|assistant|> [a] [red] [cat] [</s>]",
    ("auto", "multi"): "<|system|> hello <|user|> what is the cat <|assistant|> [a] [red] [cat] "
    "<|user|> why <|assistant|> [big] [dog] [</s>]",
    ("chatml", "single"): "<|im_start|> user what is the cat <|im_end|> <|im_start|> assistant "
    "[a] [red] [cat] [<|im_end|>] [</s>]",
    ("chatml", "multi"): "<|im_start|> system hello <|im_end|> <|im_start|> user what is the cat <|im_end|> "
    "<|im_start|> assistant [a] [red] [cat] [<|im_end|>] <|im_start|> user why <|im_end|> "
    "<|im_start|> assistant [big] [dog] [<|im_end|>] [</s>]",
    (
        "qwen",
        "single",
    ): "<|im_start|> system You are a helpful assistant. <|im_end|> <|im_start|> user what is "
    "the cat <|im_end|> <|im_start|> assistant [a] [red] [cat] [<|im_end|>] [</s>]",
    ("qwen", "multi"): "<|im_start|> system hello <|im_end|> <|im_start|> user what is the cat <|im_end|> "
    "<|im_start|> assistant [a] [red] [cat] [<|im_end|>] <|im_start|> user why <|im_end|> "
    "<|im_start|> assistant [big] [dog] [<|im_end|>] [</s>]",
    ("llama3", "single"): f"<s> {H} user {E} what is the cat <|eot_id|> {H} assistant {E} "
    "[a] [red] [cat] [<|eot_id|>] [</s>]",
    ("llama3", "multi"): f"<s> {H} system {E} hello <|eot_id|> {H} user {E} what is the cat <|eot_id|> "
    f"{H} assistant {E} [a] [red] [cat] [<|eot_id|>] {H} user {E} why <|eot_id|> "
    f"{H} assistant {E} [big] [dog] [<|eot_id|>] [</s>]",
    # Alpaca's template writes EOS after every answer itself, so none is appended.
    ("alpaca", "single"): f"{SYS} ### Instruction: what is the cat ### Response: [a] [red] [cat] [</s>]",
    ("alpaca", "multi"): "hello ### Instruction: what is the cat ### Response: [a] [red] [cat] [</s>] "
    "### Instruction: why ### Response: [big] [dog] [</s>]",
}


@pytest.mark.parametrize(("template", "sample"), list(EXPECTED))
def test_mask_is_exactly_the_assistant_turns(template, sample):
    tok = make_tokenizer()
    text, _ = resolve_template(tok, template)
    enc = encode(tok, text, SINGLE if sample == "single" else MULTI, max_length=512)
    assert marked(tok, enc) == EXPECTED[(template, sample)]


@pytest.mark.parametrize("template", ["chatml", "qwen", "llama3"])
def test_missing_template_markers_become_special_tokens(template):
    tok = make_tokenizer(markers=("<|user|>", "<|assistant|>", "<|system|>"))  # none of chatml's or llama3's
    text, _ = resolve_template(tok, template)
    size = len(tok)
    added = add_marker_tokens(tok, text)
    assert added == [m for m in MARKERS if m in text] and len(tok) == size + len(added)
    assert add_marker_tokens(tok, text) == []  # now they are there
    enc = encode(tok, text, MULTI, max_length=512)
    assert (
        marked(tok, enc) == EXPECTED[(template, "multi")]
    )  # each marker one token, as with a native tokenizer


def test_markers_are_left_alone_when_present_or_not_built_in():
    tok = make_tokenizer(markers=())
    assert add_marker_tokens(tok, TEMPLATES["alpaca"]) == []  # no markers
    assert add_marker_tokens(tok, TEMPLATE) == []  # the tokenizer's own template: its own business
    tok = make_tokenizer()
    assert (
        add_marker_tokens(tok, TEMPLATES["chatml"]) == []
        and add_marker_tokens(tok, TEMPLATES["llama3"]) == []
    )


def test_auto_falls_back_to_chatml_without_a_tokenizer_template():
    tok = make_tokenizer(chat_template=None)
    text, what = resolve_template(tok, "auto")
    assert text == TEMPLATES["chatml"] and "no chat template" in what


def test_template_that_rewrites_history_is_refused():
    # Renders earlier turns differently once a later turn exists (as reasoning templates do with old thoughts).
    tok = make_tokenizer(
        "{% for m in messages %}{% if loop.last %}{{ m['content'] }}{% else %}x{% endif %} {% endfor %}"
    )
    with pytest.raises(UserError, match="chat_template"):
        encode(tok, tok.chat_template, MULTI, max_length=512)


def test_truncation_keeps_partial_answers_and_drops_samples_with_nothing_to_learn():
    tok = make_tokenizer()
    long_prompt = [{"role": "user", "content": "the " * 20}, {"role": "assistant", "content": "a cat"}]
    # <|user|> what is the cat <|assistant|> a red cat </s>: 9 tokens; cut at 7 keeps [a] [red].
    columns, stats = encode_all(tok, TEMPLATE, [SINGLE, long_prompt, SINGLE], max_length=7)
    assert stats.samples == 3 and stats.kept == 2 and stats.dropped_no_learnable_tokens == 1
    assert stats.truncated == 3
    assert [len(x) for x in columns["input_ids"]] == [7, 7]
    assert marked(tok, {"input_ids": columns["input_ids"][0], "labels": columns["labels"][0]}) == (
        "<|user|> what is the cat <|assistant|> [a]"
    )
    assert stats.learnable_tokens == 2 and stats.tokens == 14


def test_pad_distinct_from_eos():
    tok = make_tokenizer(pad=None)
    assert "unk" in ensure_pad(tok) and tok.pad_token == "<unk>" != tok.eos_token
    tok = make_tokenizer()
    ensure_pad(tok)
    assert tok.pad_token == "<pad>"


def test_reads_a_mix_folder_and_every_format(tmp_path):
    mix = tmp_path / "mix"
    (mix / "train").mkdir(parents=True)
    (mix / "validation").mkdir()
    sharegpt = {
        "conversations": [
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"},
            {"from": "gpt", "value": "a2"},
        ],
        "system": "be brief",
        "id": "x",
        "source": "general",
    }
    pq.write_table(pa.Table.from_pylist([sharegpt]), mix / "train" / "part-00000.parquet")
    alpaca = {"instruction": "q2", "input": "", "output": "a2", "system": "", "history": [["q1", "a1"]]}
    pq.write_table(pa.Table.from_pylist([alpaca]), mix / "validation" / "part-00000.parquet")
    train, val = resolve_splits(str(mix), None)
    expected_turns = ["user", "assistant", "user", "assistant"]
    [conv] = read_conversations(train)
    assert [m["role"] for m in conv] == ["system", *expected_turns] and conv[0]["content"] == "be brief"
    [conv] = read_conversations(val)
    assert [m["role"] for m in conv] == expected_turns and conv[1]["content"] == "a1"

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"messages": SINGLE}) + "\n")
    train, val = resolve_splits(str(jsonl), None)
    assert read_conversations(train) == [SINGLE] and val == []


def test_bad_data_is_a_user_error_naming_the_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": SINGLE}) + "\n" + json.dumps({"messages": SINGLE[:1]}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: .*no answer"):
        read_conversations([bad])
    with pytest.raises(InputError, match="no Parquet or JSONL"):
        resolve_splits(str(tmp_path / "missing"), None)
