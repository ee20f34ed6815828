"""Conversions into the canonical record, and the faults that become ingest rejects."""

from __future__ import annotations

import orjson
import pytest

from factory.records import RecordFault, detect_format, make_id, to_record


def convert(obj, fmt, **kw):
    return to_record(obj, fmt, kw.get("source", "s"), "f.jsonl:1", kw.get("kind"), kw.get("fields", {}))


def test_alpaca_with_input_system_and_history():
    rec = convert(
        {
            "instruction": "Add them.",
            "input": "2 and 3",
            "output": "5",
            "system": "Be brief.",
            "history": [["Hi there, who are you?", "An assistant."]],
            "extra": 7,
        },
        "alpaca",
    )
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert rec["messages"][3]["content"] == "Add them.\n\n2 and 3"
    meta = orjson.loads(rec["meta"])
    assert meta == {"extra": 7, "kind": "chat"}
    assert rec["origin"] == "f.jsonl:1" and rec["source"] == "s"


def test_alpaca_response_alias_and_field_mapping():
    rec = convert({"instruction": "Say hi to me please.", "input": "", "response": "Hi!"}, "alpaca")
    assert rec["messages"][-1]["content"] == "Hi!"
    rec = convert(
        {"prompt": "Say hi to me please.", "answer": "Hi!"},
        "alpaca",
        fields={"instruction": "prompt", "output": "answer"},
    )
    assert rec["messages"][0]["content"] == "Say hi to me please."


def test_sharegpt_roles_and_system():
    rec = convert(
        {"system": "S", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        "sharegpt",
    )
    assert rec["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]


def test_messages_content_parts_joined_and_images_refused():
    rec = convert(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
            ]
        },
        "messages",
    )
    assert rec["messages"][0]["content"] == "a\nb"
    with pytest.raises(RecordFault) as err:
        convert(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                    {"role": "assistant", "content": "c"},
                ]
            },
            "messages",
        )
    assert err.value.reason == "non_text_content"


def test_text_record_is_one_user_turn_with_kind():
    rec = convert({"text": "def f():\n    return 1\n"}, "text", kind="code")
    assert rec["messages"] == [{"role": "user", "content": "def f():\n    return 1\n"}]
    assert orjson.loads(rec["meta"])["kind"] == "code"
    assert orjson.loads(convert({"text": "A document."}, "text")["meta"])["kind"] == "text"


@pytest.mark.parametrize(
    ("obj", "fmt", "reason"),
    [
        ({"instruction": "x y z"}, "alpaca", "missing_field"),
        ({"instruction": "x y z", "output": ["a"]}, "alpaca", "wrong_type"),
        ({"instruction": "x y z", "output": "a", "history": "no"}, "alpaca", "wrong_type"),
        ([1, 2], "alpaca", "wrong_type"),
        ({"conversations": []}, "sharegpt", "empty_conversation"),
        ({"conversations": [{"from": "human", "value": "q"}]}, "sharegpt", "bad_role_order"),
        (
            {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
            "sharegpt",
            "bad_role_order",
        ),
        ({"conversations": [{"from": "tool", "value": "a"}]}, "sharegpt", "bad_role"),
        ({"conversations": [{"from": "human"}]}, "sharegpt", "missing_field"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]},
            "messages",
            "bad_role_order",
        ),
        ({"messages": [{"role": "function", "content": "q"}]}, "messages", "bad_role"),
        ({"messages": [{"role": "user", "content": 3.5j}]}, "messages", "wrong_type"),
        ({"messages": "hello"}, "messages", "wrong_type"),
        ({"text": "   "}, "text", "empty_conversation"),
    ],
)
def test_faults(obj, fmt, reason):
    with pytest.raises(RecordFault) as err:
        convert(obj, fmt)
    assert err.value.reason == reason


def test_detect_format():
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"messages": []}) == "messages"
    assert detect_format({"instruction": "a", "output": "b"}) == "alpaca"
    assert detect_format({"instruction": "a", "response": "b"}) == "alpaca"
    assert detect_format({"text": "a"}) == "text"
    assert detect_format({"foo": 1}) is None and detect_format([1]) is None


def test_id_is_stable_under_whitespace_and_differs_by_content():
    a = [{"role": "user", "content": "Hello  world"}, {"role": "assistant", "content": "Hi"}]
    b = [{"role": "user", "content": "Hello world "}, {"role": "assistant", "content": "Hi"}]
    c = [{"role": "user", "content": "Hello world"}, {"role": "assistant", "content": "Hey"}]
    assert make_id(a) == make_id(b) != make_id(c)


def test_meta_scores_read_finite_numbers_only():
    import math

    import pyarrow as pa

    from factory.records import meta_scores, meta_values

    meta = pa.array(
        ['{"q": 0.5}', '{"q": 2}', '{"q": true}', '{"q": "0.9"}', '{"other": 1}', None, '{"q": null}', "{}"]
    )
    got = meta_scores(meta, "q")
    assert got[:2].tolist() == [0.5, 2.0] and all(math.isnan(x) for x in got[2:])
    assert meta_values(meta, "q") == [0.5, 2, True, "0.9", None, None, None, None]
