"""Training data for `factory train`: files to conversations, conversations to `input_ids` + `labels`.

Owns three things:

- **Reading.** A `mix` output folder (train/ and validation/ Parquet) or any Parquet/JSONL files in ShareGPT
  (`conversations` of {from, value} + `system`), Alpaca (instruction/input/output/system/history) or messages
  format become lists of {role, content} turns, with the pipeline's own converters (`factory.records`). A bad
  record is a user error naming `file#row` / `file:line` (training data should have come through the pipeline).
- **Chat formatting.** The tokenizer's chat template, or a built-in one (`chatml`, `llama3`, `qwen`, `alpaca`)
  when it has none or the config names one. A built-in template's markers (`<|im_start|>`, `<|eot_id|>` ...) that
  the tokenizer lacks are added to it as special tokens (`add_marker_tokens`), so each is one token that the model
  can learn to emit (trainers.sft makes their embedding rows trainable); split into pieces they could not be.
- **Loss masking.** We tokenise ourselves rather than use trl's `assistant_only_loss`: that needs
  `{% generation %}` markers in the template, which most shipped templates (Llama 3, Mistral, the tiny test
  template) lack, and trl only knows replacements for a few. Instead each conversation is rendered once, the
  character span of every assistant turn is found by rendering the prefixes (turns before it + generation prompt,
  then turns up to and including it: the span is the difference, trailing whitespace excluded), and a token is
  learned when its characters fall in a span (fast-tokenizer offsets). So every assistant turn of a multi-turn
  sample is learned, with its end-of-turn marker (`<|im_end|>`, `<|eot_id|>`), and nothing else. The EOS token is
  appended when the rendered text does not already end with it, and learned. trl takes a dataset with
  `input_ids` + `labels` as is ("used as is if present": `SFTTrainer._prepare_dataset`), so it never re-tokenises.

Truncation keeps the start (`max_length` tokens); a sample left with no learnable token is dropped and counted.
A template whose renders are not prefixes of one another (so spans cannot be found) is refused with a clear error.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory import shards, store
from factory.errors import InputError, UserError
from factory.records import CONVERTERS, RecordFault, check_role_order, detect_format
from factory.shards import RunPath
from factory.store import StorePath

IGNORE = -100
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")

ALPACA_SYSTEM = "Below is an instruction that describes a task. Write a response that appropriately completes the request."

# Built-in templates (Jinja, the variables transformers passes: messages, add_generation_prompt, bos/eos_token).
TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "qwen": (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "alpaca": (
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}"
        + ALPACA_SYSTEM
        + "{% endif %}"
        "\n\n{% for m in messages if m['role'] != 'system' %}{% if m['role'] == 'user' %}"
        "### Instruction:\n{{ m['content'] }}\n\n### Response:\n"
        "{% else %}{{ m['content'] }}{{ eos_token }}\n\n{% endif %}{% endfor %}"
    ),
}

# Markers of the built-in templates: each must be one token for the model to learn (and emit) it.
MARKERS: dict[str, list[str]] = {
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "qwen": ["<|im_start|>", "<|im_end|>"],
    "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "alpaca": [],
}


# ---- reading -------------------------------------------------------------------------------------------------


def resolve_files(spec: str | RunPath | list[str]) -> list[RunPath]:
    """Every data file named by a path, folder or glob (or a list of them), sorted; none found is an InputError.
    A path may be a URI on an object store (`s3://bucket/runs/x/mix`: a folder or one object; no globs)."""
    files: list[RunPath] = []
    for item in spec if isinstance(spec, list) else [spec]:
        p = store.location(item)
        if isinstance(p, StorePath):
            found = [f for f in p.rglob("*") if f.name.endswith(DATA_SUFFIXES)] or (
                [p] if p.is_file() else []
            )
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(DATA_SUFFIXES))
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if f.endswith(DATA_SUFFIXES))
        if not found:
            raise InputError(f"{p}: no Parquet or JSONL data found there")
        files += found
    return files


def resolve_splits(
    data: str | list[str], validation: str | list[str] | None
) -> tuple[list[RunPath], list[RunPath]]:
    """(train files, validation files): a mix folder gives its train/ and validation/, else `data` + `validation`."""
    if isinstance(data, str) and (store.location(data) / "train").is_dir():
        mix = store.location(data)
        val_dir = mix / "validation"
        has_val = val_dir.is_dir() and any(val_dir.glob("*.parquet"))
        val = resolve_files(validation) if validation else resolve_files(val_dir) if has_val else []
        return resolve_files(mix / "train"), val
    return resolve_files(data), resolve_files(validation) if validation else []


def _rows(path: RunPath) -> Any:
    """(where, object) for every row of a Parquet or JSON Lines file (a .json file may also be one array)."""
    if path.suffix == ".parquet":
        for i, row in enumerate(shards.read_table(path).to_pylist()):
            yield f"{path}#{i}", row
        return
    text = path.read_bytes().decode("utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        for i, row in enumerate(json.loads(text)):
            yield f"{path}#{i}", row
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON: {exc.msg}") from None


def read_conversations(files: list[RunPath]) -> list[list[dict[str, str]]]:
    """Every record of the files as a list of {role, content} turns (system first, ending with the assistant)."""
    out = []
    for path in files:
        for where, row in _rows(path):
            fmt = detect_format(row)
            if fmt is None or fmt == "text":
                raise InputError(
                    f"{where}: not a ShareGPT, Alpaca or messages record (keys: {sorted(row)[:6]})"
                )
            try:
                messages, _ = CONVERTERS[fmt](row)
                check_role_order(messages)
            except RecordFault as exc:
                raise InputError(f"{where}: {exc.message}") from None
            out.append(messages)
    return out


# ---- formatting and masking ----------------------------------------------------------------------------------


def resolve_template(tokenizer: Any, name: str) -> tuple[str, str]:
    """(template text, what it is) for the config's `chat_template`."""
    if name == "auto":
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: the default one
            own = own.get("default")
        if own:
            return own, "the tokenizer's chat template"
        return TEMPLATES["chatml"], "chatml (the tokenizer has no chat template)"
    return TEMPLATES[name], f"the built-in {name} template"


def add_marker_tokens(tokenizer: Any, template: str) -> list[str]:
    """Add the markers of a built-in `template` that `tokenizer` lacks as special tokens; returns those added.

    A marker is lacking when it does not encode to one token of its own (split into pieces, or unknown). The
    tokenizer's own template is left alone: its markers are the tokenizer's business."""
    name = next((n for n, text in TEMPLATES.items() if text == template), None)
    missing = []
    for marker in MARKERS.get(name, []) if name else []:
        ids = tokenizer.encode(marker, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            missing.append(marker)
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    return missing


def ensure_pad(tokenizer: Any) -> str:
    """Give the tokenizer a pad token; returns what was done, for the log.

    Padding never reaches the loss here (labels are built per sample and padded with -100; the attention mask comes
    from lengths), so pad == eos cannot stop EOS from being learned. Still, a distinct pad is cleaner for generation,
    so unk is used when the tokenizer has no pad (no new token: that would mean resizing the embeddings)."""
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return f"pad token {tokenizer.pad_token!r}"
    if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.unk_token
        return f"pad token set to unk {tokenizer.unk_token!r} (the tokenizer had none, or pad == eos)"
    tokenizer.pad_token = tokenizer.eos_token
    return "pad token = eos (safe: labels mask padding by length, so EOS stays learned)"


def _render(tokenizer: Any, template: str, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(tokenizer: Any, template: str, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """(rendered text with EOS, [start, end) character spans of every assistant turn, EOS in the last one)."""
    text = _render(tokenizer, template, messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, template, messages[:i], True)
        through = _render(tokenizer, template, messages[: i + 1], False)
        if not (through.startswith(before) and text.startswith(through)):
            raise UserError(
                "the chat template renders a conversation differently from its beginning (turn "
                f"{i}), so assistant turns cannot be located; set `chat_template:` to a built-in one (chatml, "
                "llama3, qwen, alpaca)"
            )
        end = len(through.rstrip())
        if end > len(before):
            spans.append((len(before), end))
    eos = tokenizer.eos_token
    if eos and not text.rstrip().endswith(eos):
        start = len(text)
        text += eos
        # The conversation ends with an assistant turn (check_role_order): EOS closes it and is learned with it.
        spans.append((spans.pop()[0] if spans else start, len(text)))
    return text, spans


def encode(tokenizer: Any, template: str, messages: list[dict], max_length: int) -> dict[str, list[int]]:
    """input_ids and labels (-100 outside assistant turns), cut to max_length tokens (keeping the start)."""
    text, spans = assistant_spans(tokenizer, template, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [
        tok if any(s_tok < e and e_tok > s for s, e in spans) else IGNORE
        for tok, (s_tok, e_tok) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


@dataclass
class EncodeStats:
    """What encoding did to a split, for the log and metrics.json."""

    samples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_no_learnable_tokens: int = 0
    tokens: int = 0
    learnable_tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "lengths"}


def encode_all(
    tokenizer: Any, template: str, conversations: list[list[dict]], max_length: int
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Columns {input_ids, labels} of the samples that keep a learnable token, and the counts."""
    stats = EncodeStats(samples=len(conversations))
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for messages in conversations:
        full = encode(tokenizer, template, messages, max_length=10**9)
        if len(full["input_ids"]) > max_length:
            stats.truncated += 1
        ids, labels = full["input_ids"][:max_length], full["labels"][:max_length]
        learnable = sum(1 for x in labels if x != IGNORE)
        if learnable == 0:
            stats.dropped_no_learnable_tokens += 1
            continue
        columns["input_ids"].append(ids)
        columns["labels"].append(labels)
        stats.kept += 1
        stats.tokens += len(ids)
        stats.learnable_tokens += learnable
    return columns, stats
