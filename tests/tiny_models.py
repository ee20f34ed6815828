"""Tiny models built in the tests (nothing can be downloaded): a 2-layer Llama with a word-level tokenizer and a
chat template, saved with save_pretrained so that the code under test loads it the real way, from a folder."""

from __future__ import annotations

from pathlib import Path

WORDS = "the a cat dog sat on mat ran fast slow big small red blue hello world what is why how".split()
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]  # ids 0-6


def save_word_tokenizer(folder: Path, words: list[str], mark_special: bool = False) -> int:
    """A word-level tokenizer of SPECIALS + `words` with the test chat template, saved in `folder`; returns its
    vocabulary size. `mark_special`: the specials are added tokens (skipped when decoding)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()
    if mark_special:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)
    return len(vocab)


def build_tiny_llama(folder: Path) -> Path:
    """A random tiny Llama and its tokenizer in `folder` (mechanics only: it writes nonsense)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab_size = save_word_tokenizer(folder, WORDS)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
