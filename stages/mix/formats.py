"""The output formats of `mix`: canonical records to Alpaca or ShareGPT Arrow tables, and their descriptions for
LLaMA-Factory (`dataset_info.json`) and the dataset card (`features`).

Both are built with Arrow compute over a whole shard (no Python loop over records). Every output row also carries
the record's `id` and `source`, so a training example can be traced back through the run's rejects and manifests
(loaders ignore columns they are not told about).

- ShareGPT: `conversations` = the turns after the system prompt as [{from: human|gpt, value}], `system` = the
  system prompt ("" when none).
- Alpaca: `instruction` = the last user turn, `input` = "" (ingest already folded an Alpaca input into the user
  turn), `output` = the final answer, `system`, and `history` = the earlier turns as [user, assistant] pairs,
  oldest first: LLaMA-Factory's multi-turn Alpaca, which trains on every assistant turn of the history too.

Both need a conversation that ends with an assistant answer: ingest guarantees that for chat records; `text`
records (one user turn, no answer) are rejected by the stage before they get here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SHAREGPT_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
SHAREGPT_SCHEMA = pa.schema(
    [
        ("conversations", pa.list_(SHAREGPT_TURN)),
        ("system", pa.string()),
        ("id", pa.string()),
        ("source", pa.string()),
    ]
)
ALPACA_SCHEMA = pa.schema(
    [
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("system", pa.string()),
        ("history", pa.list_(pa.list_(pa.string()))),
        ("id", pa.string()),
        ("source", pa.string()),
    ]
)
SCHEMAS = {"sharegpt": SHAREGPT_SCHEMA, "alpaca": ALPACA_SCHEMA}


def _turns(messages: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray, pa.Array]:
    """(roles, contents, row of each, system prompt per row) of the non-system turns."""
    flat = pc.list_flatten(messages)
    rows = pc.list_parent_indices(messages).to_numpy()
    roles = flat.field("role")
    is_system = pc.equal(roles, "system").to_numpy(zero_copy_only=False)
    system = np.full(len(messages), "", dtype=object)
    system[rows[is_system]] = flat.field("content").filter(pa.array(is_system)).to_numpy(zero_copy_only=False)
    keep = pa.array(~is_system)
    return (
        roles.filter(keep),
        flat.field("content").filter(keep),
        rows[~is_system],
        pa.array(system, pa.string()),
    )


def _offsets(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)


def to_sharegpt(table: pa.Table) -> pa.Table:
    messages = table.column("messages").combine_chunks()
    roles, contents, rows, system = _turns(messages)
    speaker = pc.if_else(pc.equal(roles, "user"), "human", "gpt")
    turns = pa.StructArray.from_arrays([speaker, contents], fields=list(SHAREGPT_TURN))
    conversations = pa.ListArray.from_arrays(pa.array(_offsets(rows, len(messages))), turns)
    return pa.Table.from_arrays(
        [conversations, system, table.column("id"), table.column("source")], schema=SHAREGPT_SCHEMA
    )


def to_alpaca(table: pa.Table) -> pa.Table:
    messages = table.column("messages").combine_chunks()
    n = len(messages)
    _, contents, rows, system = _turns(messages)
    offsets = _offsets(rows, n)
    last = offsets[1:] - 1  # the final answer; the turn before it is the last instruction
    contents = contents.to_numpy(zero_copy_only=False)
    history_pos = np.ones(len(contents), dtype=bool)
    history_pos[last] = False
    history_pos[last - 1] = False
    pairs = (offsets[1:] - offsets[:-1] - 2) // 2
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * int(pairs.sum()) + 1, 2, dtype=np.int32)),
        pa.array(contents[history_pos], pa.string()),
    )
    history = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(pairs)]).astype(np.int32)), inner
    )
    return pa.Table.from_arrays(
        [
            pa.array(contents[last - 1], pa.string()),
            pa.array([""] * n, pa.string()),
            pa.array(contents[last], pa.string()),
            system,
            history,
            table.column("id"),
            table.column("source"),
        ],
        schema=ALPACA_SCHEMA,
    )


CONVERT = {"sharegpt": to_sharegpt, "alpaca": to_alpaca}


def llamafactory_entry(fmt: str, folder: str) -> dict:
    """One `dataset_info.json` entry for LLaMA-Factory, reading every Parquet file of `folder`."""
    if fmt == "sharegpt":
        return {
            "file_name": folder,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    return {
        "file_name": folder,
        "formatting": "alpaca",
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        },
    }


def card_features(fmt: str) -> list[dict]:
    """The Hugging Face card's `dataset_info.features` for the format."""
    string = {"dtype": "string"}
    if fmt == "sharegpt":
        turn = [{"name": "from", **string}, {"name": "value", **string}]
        head = [{"name": "conversations", "list": turn}, {"name": "system", **string}]
    else:
        head = [{"name": k, **string} for k in ("instruction", "input", "output", "system")]
        head.append({"name": "history", "sequence": {"sequence": "string"}})
    return [*head, {"name": "id", **string}, {"name": "source", **string}]
