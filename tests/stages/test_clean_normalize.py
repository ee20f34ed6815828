"""Text normalisation of the clean stage: each step, its switch, and what it must never touch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stages.clean.config import CleanConfig, NormalizeConfig
from stages.clean.normalize import STEPS, normalize_messages, normalize_text

CFG = NormalizeConfig()


def norm(text: str, **over) -> tuple[str, list[str]]:
    return normalize_text(text, NormalizeConfig(**over))


# ---- each step -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["a\r\nb\r\nc", "a\rb\rc", "a\u2028b\u2029c"])
def test_newlines_become_lf(raw):
    assert norm(raw) == ("a\nb\nc", ["newlines"])


def test_mojibake_is_repaired():
    assert norm("CafÃ© au lait") == ("Café au lait", ["mojibake"])
    # UTF-8 read as cp1252: the repaired apostrophe stays curly (uncurl_quotes is off).
    assert norm("I donâ€™t know") == ("I don\u2019t know", ["mojibake"])
    assert norm("Ð¿Ñ€Ð¸Ð²ÐµÑ‚") == ("привет", ["mojibake"])
    assert norm("РџСЂРёРІРµС‚") == ("Привет", ["mojibake"])  # through cp1251
    assert norm("It‚Äôs fine") == ("It\u2019s fine", ["mojibake"])  # through MacRoman
    assert norm("voilÃ le travail") == ("voilà le travail", ["mojibake"])  # a lost NBSP byte


@pytest.mark.parametrize(
    "text",
    [
        "\u201cCurly quotes\u201d and \u2018single\u2019 ones stay curly.",
        "An HTML answer keeps its entities: &amp; &lt;b&gt; &#x2019;",
        "Ligatures (\ufb01) and full-width letters (\uff21\uff22) are left alone.",
        "Déjà vu, naïve café, São Paulo, Ærøskøbing, Straße.",
        "Mixed scripts: 日本語, русский, العربية, हिन्दी.",
        "print('\\033[31mred\\033[0m')",
    ],
)
def test_clean_text_is_untouched(text):
    assert norm(text) == (text, [])


def test_nfc():
    assert norm("cafe\u0301") == ("café", ["nfc"])


def test_control_characters_removed_but_tab_and_newline_kept():
    assert norm("a\x00b\x07c\x1b[0m\td\ne\x7f") == ("abc[0m\td\ne", ["control"])
    # C1 controls too; with the mojibake step on, ftfy first reads them as the cp1252 they usually are.
    assert norm("e\x9f\x85", fix_mojibake=False) == ("e", ["control"])
    assert norm("wait\x85") == ("wait\u2026", ["mojibake"])
    # A lone surrogate cannot be written as UTF-8: ftfy replaces it, or the control step drops it.
    assert norm("a \ud800b") == ("a \ufffdb", ["mojibake"])
    assert norm("a \ud800b", fix_mojibake=False) == ("a b", ["control"])


def test_zero_width_removed():
    assert norm("zero\u200bwidth\u2060 and \ufeffBOM, soft\u00adhyphen") == (
        "zerowidth and BOM, softhyphen",
        ["zero_width"],
    )


def test_zero_width_joiners_inside_words_are_kept():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji made with ZWJ
    persian = "می\u200cخواهم"  # ZWNJ is part of the spelling
    assert norm(f"{family} {persian}") == (f"{family} {persian}", [])
    # A stray joiner next to a space is junk.
    assert norm("word\u200d next") == ("word next", ["zero_width"])


def test_trailing_whitespace_and_blank_edges():
    assert norm("\n \nfirst  \nsecond\t\n\n\n") == ("first\nsecond", ["trailing_whitespace"])
    assert norm("no break\u00a0\nhere\u3000") == ("no break\nhere", ["trailing_whitespace"])


def test_code_indentation_is_never_changed():
    code = "def f(x):\n    if x:  \n\treturn 1\n        # deep\n    return 0   \n"
    text, steps = norm("\n\n" + code)
    assert text == "def f(x):\n    if x:\n\treturn 1\n        # deep\n    return 0"
    assert steps == ["trailing_whitespace"]
    # The first line's indentation survives the removal of leading blank lines.
    assert norm("\n   \n    x = 1\n")[0] == "    x = 1"


def test_steps_are_reported_in_order_once():
    text, steps = norm("CafÃ©\r\n\u200bx  ")
    assert text == "Café\nx"
    assert steps == ["newlines", "mojibake", "zero_width", "trailing_whitespace"]
    assert all(s in STEPS for s in steps)


# ---- switches ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "raw"),
    [
        ("newlines", "a\r\nb"),
        ("fix_mojibake", "CafÃ©"),
        ("nfc", "cafe\u0301"),
        ("strip_control", "a\x00b"),
        ("strip_zero_width", "a\u200bb"),
        ("trailing_whitespace", "a  \nb"),
    ],
)
def test_each_step_can_be_switched_off(flag, raw):
    assert norm(raw, **{flag: False}) == (raw, [])
    assert norm(raw)[1]  # and is on by default


def test_disabled_normalisation_returns_the_input():
    messy = "CafÃ©\r\n\x00  "
    assert norm(messy, enabled=False) == (messy, [])
    messages = [{"role": "user", "content": messy}]
    assert normalize_messages(messages, NormalizeConfig(enabled=False)) == (messages, [])


def test_empty_text():
    assert norm("") == ("", [])


def test_normalize_messages_does_not_mutate_and_merges_steps():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi\r\nthere  "},
        {"role": "assistant", "content": "CafÃ©\r\n"},
    ]
    before = [dict(m) for m in messages]
    out, steps = normalize_messages(messages, CFG)
    assert messages == before
    assert [m["content"] for m in out] == ["Be brief.", "Hi\nthere", "Café"]
    assert [m["role"] for m in out] == ["system", "user", "assistant"]
    assert steps == ["newlines", "mojibake", "trailing_whitespace"]


# ---- config --------------------------------------------------------------------------------------------------


def test_normalize_config_refuses_unknown_keys():
    with pytest.raises(ValidationError):
        NormalizeConfig(fix_mojibak=True)
    with pytest.raises(ValidationError):
        CleanConfig.model_validate({"normalize": {"unicode": "NFKC"}})


def test_every_normalize_field_is_described():
    for name, field in NormalizeConfig.model_fields.items():
        assert field.description, name
