"""The canonical record: its Arrow schemas, its id, and the conversions from alpaca, sharegpt, messages and text.

A record is `{id, source, messages, meta, origin}` (see CONTRACTS.md). Conversions are pure functions from one
parsed input object to a record dict; a structural fault raises `RecordFault(reason, message)`, which ingest turns
into a reject. Reject reasons raised here: `missing_field`, `wrong_type`, `empty_conversation`, `bad_role`,
`bad_role_order`, `non_text_content`.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("meta", pa.string()),
        ("origin", pa.string()),
    ]
)

REJECT_SCHEMA = RECORD_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string()))

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}


class RecordFault(Exception):
    """A record that cannot become a canonical record; `reason` is the reject reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def make_id(messages: list[dict[str, str]]) -> str:
    """Stable id: a hash of the conversation with Unicode and whitespace normalised (exact repeats share it)."""
    h = hashlib.blake2b(digest_size=16)
    for m in messages:
        content = m["content"]
        if not content.isascii():  # NFC changes nothing in ASCII, and isascii() is O(1) on str
            content = unicodedata.normalize("NFC", content)
        h.update(f"{m['role']}\x00{' '.join(content.split())}\x01".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def dumps_meta(meta: dict[str, Any]) -> str:
    return orjson.dumps(meta, default=str).decode()


def loads_meta(meta: str | None) -> dict[str, Any]:
    return orjson.loads(meta) if meta else {}


def meta_values(meta: pa.Array | pa.ChunkedArray, key: str) -> list:
    """`meta[key]` of each row of a `meta` column (None where absent); only the rows whose JSON mentions the key
    are parsed."""
    out: list = [None] * len(meta)
    mentions = pc.fill_null(pc.match_substring(meta, f'"{key}"'), False).to_numpy(zero_copy_only=False)
    for row in np.flatnonzero(mentions):
        out[row] = loads_meta(meta[int(row)].as_py()).get(key)
    return out


def meta_scores(meta: pa.Array | pa.ChunkedArray, key: str) -> np.ndarray:
    """`meta[key]` as float64 where it is a finite number (not a bool), NaN elsewhere: a score to rank by."""
    out = np.full(len(meta), np.nan)
    for row, value in enumerate(meta_values(meta, key)):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[row] = float(value)
    return out


# ---- conversions ---------------------------------------------------------------------------------------------


def _text_field(obj: dict, key: str, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise RecordFault("missing_field", f"missing field `{key}`")
        return ""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordFault("wrong_type", f"field `{key}` must be a string, got {type(value).__name__}")
    return value if isinstance(value, str) else str(value)


def _meta_rest(obj: dict, used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in used}


def from_alpaca(obj: dict) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """instruction/input/output with optional system and history ([[user, assistant], ...])."""
    instruction = _text_field(obj, "instruction")
    inp = _text_field(obj, "input", required=False)
    output = _text_field(obj, "output")
    system = _text_field(obj, "system", required=False)
    messages: list[dict[str, str]] = []
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise RecordFault(
            "wrong_type",
            f"field `history` must be a list of [user, assistant] pairs, got {type(history).__name__}",
        )
    for i, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RecordFault("wrong_type", f"`history[{i}]` must be a [user, assistant] pair of strings")
        messages.append({"role": "user", "content": pair[0]})
        messages.append({"role": "assistant", "content": pair[1]})
    user = f"{instruction}\n\n{inp}" if inp.strip() else instruction
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": output})
    return messages, _meta_rest(obj, {"instruction", "input", "output", "system", "history"})


def _turns(obj: dict, key: str) -> list:
    if key not in obj or obj[key] is None:
        raise RecordFault("missing_field", f"missing field `{key}`")
    turns = obj[key]
    if not isinstance(turns, list):
        raise RecordFault("wrong_type", f"field `{key}` must be a list, got {type(turns).__name__}")
    if not turns:
        raise RecordFault("empty_conversation", f"field `{key}` is an empty list")
    return turns


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordFault("non_text_content", f"{where} has a non-text part ({kind})")
        return "\n".join(parts)
    raise RecordFault("wrong_type", f"{where} must be a string, got {type(value).__name__}")


def from_sharegpt(obj: dict) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """conversations of {from, value}; human/gpt (and the usual aliases); optional top-level `system`."""
    messages: list[dict[str, str]] = []
    system = _text_field(obj, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(_turns(obj, "conversations")):
        if not isinstance(turn, dict):
            raise RecordFault(
                "wrong_type", f"`conversations[{i}]` must be an object, got {type(turn).__name__}"
            )
        if "from" not in turn or "value" not in turn:
            missing = "from" if "from" not in turn else "value"
            raise RecordFault("missing_field", f"missing field `conversations[{i}].{missing}`")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise RecordFault(
                "bad_role", f"`conversations[{i}].from` is {turn['from']!r}; expected human, gpt or system"
            )
        messages.append({"role": role, "content": _content(turn["value"], f"`conversations[{i}].value`")})
    return messages, _meta_rest(obj, {"conversations", "system"})


def from_messages(obj: dict) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """OpenAI-style messages of {role, content}; text content parts are joined."""
    messages: list[dict[str, str]] = []
    for i, turn in enumerate(_turns(obj, "messages")):
        if not isinstance(turn, dict):
            raise RecordFault("wrong_type", f"`messages[{i}]` must be an object, got {type(turn).__name__}")
        if "role" not in turn or "content" not in turn:
            missing = "role" if "role" not in turn else "content"
            raise RecordFault("missing_field", f"missing field `messages[{i}].{missing}`")
        role = turn["role"]
        if role not in ROLES:
            raise RecordFault(
                "bad_role", f"`messages[{i}].role` is {role!r}; expected system, user or assistant"
            )
        messages.append({"role": role, "content": _content(turn["content"], f"`messages[{i}].content`")})
    return messages, _meta_rest(obj, {"messages"})


def from_text(obj: dict) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """A raw document or a piece of code, kept as one user turn."""
    return [{"role": "user", "content": _text_field(obj, "text")}], _meta_rest(obj, {"text"})


CONVERTERS: dict[str, Callable[[dict], tuple[list[dict[str, str]], dict[str, Any]]]] = {
    "alpaca": from_alpaca,
    "sharegpt": from_sharegpt,
    "messages": from_messages,
    "text": from_text,
}


def check_role_order(messages: list[dict[str, str]]) -> None:
    """Optional leading system turn, then user/assistant alternating, starting with user, ending with assistant."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise RecordFault("empty_conversation", "no user or assistant turn")
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            offset = len(messages) - len(turns)
            raise RecordFault(
                "bad_role_order", f"turn {i + offset} is `{m['role']}` where `{expected}` was expected"
            )
    if turns[-1]["role"] != "assistant":
        raise RecordFault("bad_role_order", "the conversation ends with a user turn and no answer")


def detect_format(obj: Any) -> str | None:
    """The record format an object looks like, from its keys; None when nothing fits."""
    if not isinstance(obj, dict):
        return None
    if "conversations" in obj:
        return "sharegpt"
    if "messages" in obj:
        return "messages"
    if "instruction" in obj and ("output" in obj or "response" in obj):
        return "alpaca"
    if "text" in obj:
        return "text"
    return None


def to_record(obj: Any, fmt: str, source: str, origin: str, kind: str | None, fields: dict[str, str]) -> dict:
    """One parsed input object -> a canonical record dict; raises RecordFault."""
    if not isinstance(obj, dict):
        raise RecordFault("wrong_type", f"a record must be a JSON object, got {type(obj).__name__}")
    for canonical, name in fields.items():
        if name in obj and canonical not in obj:
            obj[canonical] = obj.pop(name)
    if fmt == "alpaca" and "output" not in obj and "response" in obj:
        obj["output"] = obj.pop("response")
    messages, meta = CONVERTERS[fmt](obj)
    if fmt == "text":
        if not messages[0]["content"].strip():
            raise RecordFault("empty_conversation", "field `text` is empty")
    else:
        check_role_order(messages)
    meta["kind"] = kind or ("text" if fmt == "text" else "chat")
    return {
        "id": make_id(messages),
        "source": source,
        "messages": messages,
        "meta": dumps_meta(meta),
        "origin": origin,
    }
