"""The clean rules: for each, a record that must fire (reason and evidence) and look-alikes that must not."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from stages.clean.config import CleanConfig
from stages.clean.rules import RULES, RULES_BY_NAME, RecordView, check
from stages.clean.text import count_words, extract_prose, looks_like_code, split_fences

CFG = CleanConfig()


def chat(user: str, answer: str, meta: dict | None = None, system: str | None = None) -> RecordView:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return RecordView(messages, "chat", meta or {})


def turns(*contents: str) -> RecordView:
    roles = ["user", "assistant"] * len(contents)
    return RecordView([{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)], "chat", {})


def run(rule: str, view: RecordView, cfg: CleanConfig = CFG):
    return RULES_BY_NAME[rule].fn(view, cfg)


def fired(rule: str, view: RecordView, cfg: CleanConfig = CFG) -> dict:
    verdict = run(rule, view, cfg)
    assert verdict is not None, f"{rule} should fire"
    reason, detail = verdict
    assert reason == rule
    json.dumps(detail)  # evidence is JSON-serialisable
    assert all(len(v) <= 200 for v in detail.values() if isinstance(v, str))
    return detail


def kept(view: RecordView) -> None:
    assert check(view, CFG) is None, check(view, CFG)


# Prose long enough for the statistics and the mid-sentence check (about 110 words).
PARAGRAPH = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light into chemical "
    "energy. In the chloroplasts, chlorophyll absorbs sunlight, which drives the splitting of water molecules "
    "and releases oxygen as a by-product. The energy captured this way is stored in ATP and NADPH, and the "
    "Calvin cycle then uses both to fix carbon dioxide from the air into sugars. Those sugars feed the plant "
    "and, through food chains, almost every other living thing on Earth. The rate of photosynthesis depends "
    "on light intensity, temperature and the concentration of carbon dioxide, which is why greenhouses often "
    "enrich their air with it to grow crops faster."
)


# ---- too_short -----------------------------------------------------------------------------------------------


def test_too_short_fires_on_a_two_word_instruction():
    d = fired("too_short", chat("Hi there", "Hello! How can I help you today?"))
    assert d["words"] == 2 and d["min_words"] == 3 and d["turn"] == 0


def test_short_answers_to_real_questions_are_kept():
    kept(chat("Is 7 a prime number? Answer yes or no.", "Yes"))
    kept(chat("Round 5.43 to one decimal place.", "5.4"))
    kept(chat("What is entropy?", "A measure of disorder."))


def test_too_short_counts_cjk_characters():
    assert count_words("什么是熵？") >= 3  # 4 characters, about 3 words
    kept(chat("什么是熵？", "熵是系统无序程度的量度。"))
    assert fired("too_short", chat("你好", "你好！"))["words"] == 1


def test_too_short_multi_turn_with_a_real_question_later_is_kept():
    kept(
        turns(
            "Hi", "Hello! How can I help?", "Can you explain what a hash table is?", "A hash table maps keys."
        )
    )
    assert fired("too_short", turns("Hi", "Hello!", "Thanks", "Bye!"))["turn"] == 0


# ---- too_long ------------------------------------------------------------------------------------------------


def test_too_long_fires_over_the_token_estimate():
    d = fired("too_long", chat("Summarise this.", "word " * 30_000))
    assert d["est_tokens"] > d["max_tokens"] == 32_768
    assert d["chars"] == len("Summarise this.") + len("word " * 30_000)


def test_too_long_counts_cjk_as_one_token_each():
    fired("too_long", chat("翻译成英文。", "字" * 33_000))
    assert run("too_long", chat("Summarise this text please.", "A long but fine answer. " * 4_000)) is None


# ---- empty_response ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["", "   \n\t"])
def test_empty_response_fires(answer):
    assert fired("empty_response", chat("What is the capital of France?", answer))["check"] == "empty"


@pytest.mark.parametrize(
    "answer", ["<nooutput>", "No Output", "<noinput>\n<output image>", "[screenshot of the page]"]
)
def test_placeholder_answers_are_empty(answer):
    assert (
        fired("empty_response", chat("Create a banner for the given product.", answer))["check"]
        == "placeholder"
    )


@pytest.mark.parametrize(
    "answer", ["No", "[1, 2, 3]", "<h1>Title</h1>", "(A && !B) || (!A && B)", "None of them."]
)
def test_short_real_answers_are_not_empty(answer):
    assert run("empty_response", chat("Give the answer for the given input.", answer)) is None


def test_empty_response_reports_the_turn():
    assert (
        fired("empty_response", turns("Tell me a joke.", "Why did the chicken...", "Another one?", ""))[
            "turn"
        ]
        == 3
    )


# ---- repeats_instruction -------------------------------------------------------------------------------------


def test_repeats_instruction_fires_on_an_echo():
    d = fired("repeats_instruction", chat("Write a haiku about the sea.", "Write a haiku about the sea"))
    assert d["overlap"] == 1.0 and d["turn"] == 1 and d["instruction_turn"] == 0


def test_repeat_after_me_is_kept():
    kept(chat("Repeat after me: hello", "hello"))
    kept(chat("Say 'good morning' in a cheerful tone.", "Good morning!"))


def test_answer_equal_to_the_input_part_is_kept():
    # A grammar fix of a sentence that was already correct.
    kept(
        chat(
            "Correct the grammar of this sentence.\n\nShe goes to school every day.",
            "She goes to school every day.",
        )
    )


# ---- needs_modality ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "check_name"),
    [
        ("Describe the image below.", "media_reference"),
        ("Listen to this audio clip and transcribe it.", "media_reference"),
        ("Identify the scientific name for the creature in the photo.", "media_reference"),
        ("Write a short caption for this picture of my dog.", "media_reference"),
        ("Summarize the data in the chart in three sentences.", "media_reference"),
        ("Go to https://example.com/news and summarise the page.", "url"),
        ("Summarize this article.\n\nhttps://example.com/2020/some-article", "url"),
        ("Draw a picture of a cat.", "output"),
        ("Create a pie chart that shows the population of each continent.", "output"),
        ("Plot the function y = x^2.", "output"),
        ("Classify the following shape.\n\n![shape](https://example.com/shape.png)", "placeholder"),
        ("How would you improve this logo?\n\n[Image of a logo]", "placeholder"),
    ],
)
def test_needs_modality_fires(instruction, check_name):
    d = fired("needs_modality", chat(instruction, "Here is my answer about it."))
    assert d["check"] == check_name and d["turn"] == 0 and d["match"]


@pytest.mark.parametrize(
    "instruction",
    [
        "Write a Python function that reads a file and returns its lines.",
        "Draw a conclusion from the data: sales rose 10% after the campaign.",
        "Explain how an image classifier works.",
        "Plot the function using matplotlib code.",
        "How do I draw Homer Simpson?",
        "What is the plot of Hamlet?",
        "Find the shortest path in the graph below.\n\nA-B: 1\nB-C: 2\nA-C: 5",
        "I saw this video where someone said light is a wave. Is a photon a wave or a particle?",
        "Extract the domain name from the URL https://docs.example.com/page.",
        "Draw an ASCII art picture of a cat.",
        "Give me some tips for taking a good photo of the night sky.",
        "Imagine you are Frida Kahlo. Explain the symbols you used in the painting.",
    ],
)
def test_needs_modality_look_alikes_are_kept(instruction):
    assert run("needs_modality", chat(instruction, "A helpful answer in plain text.")) is None


def test_needs_modality_coding_answer_can_draw():
    answer = "```python\nimport turtle\nturtle.circle(50)\n```"
    assert run("needs_modality", chat("Draw a circle.", answer)) is None


def test_needs_modality_gate_covers_every_trigger():
    from stages.clean.rules import _MODALITY_GATE, MODALITY_TRIGGERS

    assert all(any(g in t for g in _MODALITY_GATE) for t in MODALITY_TRIGGERS)


def test_needs_modality_from_meta():
    d = fired("needs_modality", chat("What is in it?", "A cat.", meta={"image": "coco/123.jpg"}))
    assert d == {"check": "meta", "meta_key": "image"}


# ---- refusal -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "check_name"),
    [
        ("As an AI language model, I do not have personal opinions.", "disclaimer"),
        ("As an AI, I don't have access to real-time data, but prices vary.", "disclaimer"),
        ("I cannot fulfill that request.", "refusal"),
        ("I'm sorry, but I can't help with that.", "refusal"),
        ("I'm sorry, but I cannot provide real-time stock prices.", "refusal"),
        ("Sure. As of my last knowledge update in 2021, the record was 9.58 s.", "disclaimer"),
    ],
)
def test_refusal_fires(answer, check_name):
    d = fired("refusal", chat("What is the price of gold today?", answer))
    assert d["check"] == check_name and d["turn"] == 1 and d["phrase"]


@pytest.mark.parametrize(
    ("instruction", "answer"),
    [
        ("Translate to English: No puedo venir mañana.", "I cannot come tomorrow."),
        ("Translate to English: Lo siento, pero no puedo ayudarte.", "I'm sorry, but I can't help you."),
        ("Who are you?", "I am Vicuna, a language model trained by researchers from LMSYS."),
        ("What is your name?", "As a language model, I go by the name Vicuna."),
        ("My cat died yesterday.", "I'm sorry to hear that. Losing a pet is really hard."),
        (
            "Write a dialogue between a customer and a clerk.",
            "Customer: Can I return this?\nClerk: I'm sorry, but I can't accept returns.",
        ),
        ("Generate an excuse for not coming to work.", "I'm sorry, but I'm unable to come into work today."),
        ("You are an AI on a spaceship. Answer the captain.", "As an AI, I cannot open the pod bay doors."),
        ("Share a thought.", "I can't help but wonder how the universe began."),
        ("Write about AI research careers.", "As an AI researcher, I spend my days reading papers."),
    ],
)
def test_refusal_look_alikes_are_kept(instruction, answer):
    assert run("refusal", chat(instruction, answer)) is None


def test_refusal_deep_in_an_answer_is_not_a_refusal():
    answer = PARAGRAPH + " " + "I'm sorry, but I can't stress enough how much this matters."
    assert run("refusal", chat("Explain how photosynthesis works.", answer)) is None


def test_refusal_extra_phrases():
    cfg = CleanConfig(refusal={"extra_phrases": ["OpenAI's content policy"]})
    d = fired("refusal", chat("Tell me a story.", "This goes against OpenAI's content policy."), cfg)
    assert d["check"] == "extra_phrase"


# ---- truncated -----------------------------------------------------------------------------------------------


def test_truncated_unclosed_fence():
    d = fired("truncated", chat("Write a loop in Python.", "Here you go:\n```python\nfor i in range(3):\n"))
    assert d["check"] == "unclosed_fence" and "range" in d["tail"]


def test_truncated_finish_reason():
    assert fired("truncated", chat("Tell me a story.", "Once upon a time.", {"finish_reason": "length"}))[
        "check"
    ] == ("finish_reason")


def test_truncated_mid_sentence_on_a_function_word():
    d = fired(
        "truncated", chat("Explain how photosynthesis works.", PARAGRAPH + " In short, it is the basis of")
    )
    assert d["check"] == "mid_sentence" and d["ends_on_function_word"] and d["words"] >= 80


def test_truncated_mid_sentence_any_word_in_a_long_answer():
    answer = " ".join([PARAGRAPH] * 3) + " Next time you shop, reach for the organic section and your body"
    assert fired("truncated", chat("Why eat organic food?", answer))["ends_on_function_word"] is False


@pytest.mark.parametrize(
    "answer",
    [
        "Paris",
        PARAGRAPH,  # ends with a period
        PARAGRAPH + " This is useful when you review your own code as well",  # a missing period, 120 words
        PARAGRAPH
        + "\n\nKey steps:\n- light absorption\n- water splitting\n- carbon fixation in the Calvin cycle",
        PARAGRAPH + "\n\n```python\nprint('photosynthesis')\n```",
        PARAGRAPH + "\n\nBest regards,\nJohn Smith",
        PARAGRAPH + "\n\n## Further reading on the Calvin cycle and light reactions",
        "```python\nprint(1)\n```",
        "Here are the steps:\n```\nstep one\n```\n" + "Then we " * 60 + "finish.",
    ],
)
def test_truncated_look_alikes_are_kept(answer):
    assert run("truncated", chat("Explain how photosynthesis works.", answer)) is None


def test_verse_without_punctuation_is_kept():
    poem = "\n".join(
        f"The {w} river runs beneath the silent moon tonight and forever more"
        for w in ["quiet", "dark", "cold"] * 4
    )
    assert run("truncated", chat("Write a poem.", poem)) is None


# ---- symbol_ratio --------------------------------------------------------------------------------------------


def test_symbol_ratio_hashes():
    tags = " ".join(f"#tag{i}" for i in range(60))
    d = fired("symbol_ratio", chat("Write a post.", "Follow us " + tags))
    assert d["check"] == "hash_ratio" and d["value"] > d["threshold"] == 0.25


def test_symbol_ratio_ellipses():
    d = fired("symbol_ratio", chat("Say something.", " ".join(["well..."] * 30 + ["I", "see..."] * 15)))
    assert d["check"] == "ellipsis_ratio"


def test_symbol_ratio_noise_words():
    d = fired("symbol_ratio", chat("Say something.", "ok " * 20 + "\u2605\u2606 " * 40 + "@@ " * 10))
    assert d["check"] == "word_frac" and d["value"] < d["threshold"]


@pytest.mark.parametrize(
    "answer",
    [
        "3 + 4 = 7",
        " ".join(f"{i} + {i} = {2 * i}," for i in range(40)),  # long arithmetic: digits are words
        "## Step 1\n" + PARAGRAPH + "\n\n## Step 2\n" + PARAGRAPH,  # Markdown headings are not hashes
        "| a | b |\n| --- | --- |\n" + "\n".join(f"| {i} | {i * i} |" for i in range(30)),  # table pipes
        "Loving the sun! #summer #beach #fun",  # a short post with hashtags
        "def f(x):\n    return x ** 2  # square\n" * 20,  # code is not prose
    ],
)
def test_symbol_ratio_look_alikes_are_kept(answer):
    assert run("symbol_ratio", chat("Answer this.", answer)) is None


# ---- repetition ----------------------------------------------------------------------------------------------


def test_repetition_loop():
    answer = "The answer is that the cat sat on the mat and looked at the door. " * 12
    d = fired("repetition", chat("Describe the cat.", answer))
    assert d["value"] > d["threshold"] and d["words"] >= 50


def test_repetition_duplicate_lines():
    answer = "\n".join(["Thank you for your question about the weather today."] * 10)
    assert fired("repetition", chat("What is the weather?", answer))["check"] == "dup_line_frac"


def test_repetition_stutter():
    answer = "This is very " + "very " * 80 + "good."
    assert fired("repetition", chat("How good is it?", answer))["check"].startswith("top_2gram")


def test_repetition_look_alikes_are_kept():
    chorus = "Oh keep on fighting for another day\nRise up and never let the blues get in your way"
    song = "\n\n".join(
        [
            "Verse 1:\nAin't no sunshine when you're gone\nI'm left here all alone\nPainful reminders all around",
            "Chorus:\n" + chorus,
            "Verse 2:\nThe days are dark and long\nFeeling like I don't belong\nBut the sun will soon come",
            "Chorus:\n" + chorus,
        ]
    )
    kept(chat("Compose a song with a bluesy tune.", song))
    items = "\n".join(
        f"{i}. This type of targeting is based on the {w} of customers."
        for i, w in enumerate(["location", "age", "lifestyle", "behaviour", "interests"], 1)
    )
    kept(chat("Identify 5 types of marketing targeting.", items))
    kept(chat("Explain how photosynthesis works.", PARAGRAPH))
    # Short texts are not tested at all, and code is not prose.
    kept(chat("Say yes five times.", "yes yes yes yes yes"))
    kept(chat("Print hello ten times in Python.", "for _ in range(10):\n    print('hello')\n" * 8))


# ---- check, kinds, config ------------------------------------------------------------------------------------


def test_check_returns_the_first_failing_rule_in_order():
    view = chat("Hi", "")  # both too_short and empty_response
    assert check(view, CFG)[0] == RULES[[r.name for r in RULES].index("empty_response")].name


@pytest.mark.parametrize(
    ("rule", "view"),
    [
        ("too_short", chat("Hi there", "Hello!")),
        ("empty_response", chat("What is 2 + 2?", "")),
        ("refusal", chat("What is 2 + 2?", "I'm sorry, but I can't help with that.")),
        ("needs_modality", chat("Describe the image below.", "A cat.")),
        ("truncated", chat("Write some Python code.", "```python\nx = 1\n")),
        ("repeats_instruction", chat("Write a haiku about the sea.", "Write a haiku about the sea.")),
        ("repetition", chat("Describe the cat.", "The cat sat on the mat and looked at the door. " * 12)),
    ],
)
def test_check_honours_enabled_false(rule, view):
    assert check(view, CFG)[0] == rule
    off = CleanConfig(**{rule: {"enabled": False}})
    assert check(view, off) is None or check(view, off)[0] != rule


def test_text_records_get_only_document_rules():
    doc = RecordView(
        [{"role": "user", "content": "Describe the image below. I'm sorry, but I can't help."}], "text", {}
    )
    assert check(doc, CFG) is None  # no instruction/answer rules on a document
    looped = RecordView(
        [{"role": "user", "content": "The cat sat on the mat and looked at the door. " * 12}], "text", {}
    )
    assert check(looped, CFG)[0] == "repetition"
    assert check(RecordView([{"role": "user", "content": "Hello"}], "text", {}), CFG)[0] == "too_short"


def test_code_records_get_only_the_length_rule():
    code = "x = 1\n" * 200
    assert check(RecordView([{"role": "user", "content": code}], "code", {}), CFG) is None
    big = RecordView([{"role": "user", "content": "x = 1\n" * 30_000}], "code", {})
    assert check(big, CFG)[0] == "too_long"


def test_every_rule_has_a_config_section_with_enabled():
    sections = CleanConfig.model_fields
    for rule in RULES:
        assert rule.name in sections
        assert "enabled" in sections[rule.name].annotation.model_fields
        assert rule.group in {"length", "content", "structure", "statistics"}


def test_every_config_field_is_described():
    for name, field in CleanConfig.model_fields.items():
        assert field.description, name
        for sub, subfield in field.annotation.model_fields.items():
            assert subfield.description, f"{name}.{sub}"


@pytest.mark.parametrize(
    "raw",
    [
        {"too_short": {"min_wordz": 2}},
        {"tooshort": {"min_words": 2}},
        {"repetition": {"enabled": True, "gopher": True}},
        {"pii": {"enabld": True}},
    ],
)
def test_config_refuses_unknown_keys(raw):
    with pytest.raises(ValidationError):
        CleanConfig.model_validate(raw)


def test_config_validates_values():
    with pytest.raises(ValidationError):
        CleanConfig.model_validate({"repeats_instruction": {"min_overlap": 1.5}})
    assert CleanConfig.model_validate({"too_short": {"min_words": 5}}).too_short.min_words == 5


# ---- text helpers --------------------------------------------------------------------------------------------


def test_split_fences():
    outside, blocks, balanced = split_fences("Intro\n```python\nx = 1\n```\nOutro")
    assert (outside, blocks, balanced) == ("Intro\nOutro", ["x = 1"], True)
    assert split_fences("a\n```\ncode\n")[2] is False
    # Inline spans are not fences; LIMA-style code on the fence line and a fence closing a code line are.
    assert split_fences("```null``` is returned")[2] is True
    assert split_fences("```int x = 1;\nreturn x;```\nafter")[1:] == (["int x = 1;\nreturn x;"], True)
    assert split_fences("~~~\ncode\n~~~")[1:] == (["code"], True)


def test_looks_like_code_and_prose_extraction():
    assert looks_like_code("def add(a, b):\n    return a + b")
    assert looks_like_code("SELECT name FROM users WHERE age > 30;")
    assert looks_like_code("#include <stdio.h>\nint main() {\n    return 0;\n}")
    assert not looks_like_code(PARAGRAPH)
    assert not looks_like_code("Select the best answer from the list below.")
    p = extract_prose(
        "Call `len(x)` here.\nIt counts items.\n\n    indented = code\n    more = code\n\nBack to prose.\nThe end."
    )
    assert "indented" not in p.text and "len(x)" not in p.text and "Back to prose." in p.text
    assert not p.is_code and p.balanced
