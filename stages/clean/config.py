"""Config of the `clean` stage: one section for text normalisation and one per quality rule.

Every rule section has `enabled` and the thresholds of that rule; the description of each threshold says where
its default comes from. The defaults are tuned so that curated SFT sets (LIMA, Alpaca-GPT4, CodeAlpaca) keep at
least 95-98% of their records while real faults (refusals, cut answers, degenerate loops, tasks that need an
image) are dropped; `tests/benchmarks/clean_rule_shares.py` measures what each rule drops on the shared data.
"""

from __future__ import annotations

from pydantic import Field

from factory.config import Section
from stages.clean.code import CodeParseConfig
from stages.clean.pii import PiiConfig


class NormalizeConfig(Section):
    """Text normalisation, applied to every message before the rules. Leading whitespace is never changed."""

    enabled: bool = Field(default=True, description="Normalise message text at all (False skips every step).")
    newlines: bool = Field(
        default=True,
        description="Turn \\r\\n, lone \\r and the Unicode line/paragraph separators (U+2028, U+2029) into \\n.",
    )
    fix_mojibake: bool = Field(
        default=True,
        description="Repair mojibake (UTF-8 read as Latin-1/cp1252, C1 controls, UTF-16 surrogates) with ftfy. "
        "Only the encoding fixes run: quotes stay curly, HTML entities, ligatures, widths and terminal escapes "
        "are left alone. Pure-ASCII text is skipped.",
    )
    nfc: bool = Field(
        default=True,
        description="Unicode NFC (composed) normalisation, so that 'é' is one code point whichever way it was "
        "typed (ftfy's default normalisation too).",
    )
    strip_control: bool = Field(
        default=True,
        description="Remove C0/C1 control characters, DEL and lone surrogates, except \\n and \\t (with "
        "`fix_mojibake` on, C1 characters are first read as the cp1252 punctuation they usually are).",
    )
    strip_zero_width: bool = Field(
        default=True,
        description="Remove zero-width space (U+200B), word joiner (U+2060), BOM/ZWNBSP (U+FEFF) and soft hyphen "
        "(U+00AD); ZWJ/ZWNJ only where they stand next to whitespace or the text edge, since inside words they "
        "are meaningful (emoji sequences, Persian, Indic scripts).",
    )
    trailing_whitespace: bool = Field(
        default=True,
        description="Strip whitespace at the end of every line and blank lines at the start and end of a "
        "message. Indentation (leading whitespace of a non-blank line) is never touched.",
    )


class TooShortConfig(Section):
    """The instruction (first user turn) has too few words to be a task."""

    enabled: bool = Field(default=True, description="Drop records whose instruction is too short.")
    min_words: int = Field(
        default=3,
        ge=0,
        description="Minimum words in the first user turn (system turn not counted; Chinese/Japanese count one "
        "word per 1.5 characters). Self-Instruct drops instructions of 3 words or fewer; we drop only under 3, "
        "since 3-word prompts such as 'What is entropy?' are fine SFT tasks. Answers have no minimum: 'No' or '5.4' "
        "to a question that asks for one is good data. In a multi-turn record the rule fires only when no user "
        "turn reaches the minimum (an opening 'Hi' followed by a real question is kept). `text` records use the "
        "same minimum on the document.",
    )


class TooLongConfig(Section):
    """The record is longer than any training context it could be used in."""

    enabled: bool = Field(default=True, description="Drop records too long to train on.")
    max_tokens: int = Field(
        default=32_768,
        ge=1,
        description="Maximum estimated tokens of the whole record. 32k is the longest context common SFT recipes "
        "train with; a longer record would be truncated by the trainer, which then learns a cut-off answer.",
    )
    chars_per_token: float = Field(
        default=4.0,
        gt=0,
        description="Characters per token used for the estimate (~4 for English with BPE tokenizers, OpenAI's "
        "rule of thumb). Chinese/Japanese characters count as one token each.",
    )


class EmptyResponseConfig(Section):
    """An assistant turn is empty, whitespace only, or only a placeholder ("<nooutput>", "[image]")."""

    enabled: bool = Field(
        default=True,
        description="Drop records with an empty assistant turn, or one that is only a stand-in such as "
        "'<nooutput>', 'No Output' or '[screenshot of ...]' (Alpaca has a few).",
    )


class RepeatsInstructionConfig(Section):
    """The answer only echoes the instruction back."""

    enabled: bool = Field(default=True, description="Drop records whose answer only repeats the instruction.")
    min_overlap: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Fire when the answer's words equal the instruction's, or one contains the other and the "
        "shorter is at least this fraction of the longer (so 'Repeat after me: hello' -> 'hello' is kept). "
        "Comparison is on lower-cased words without punctuation.",
    )


class RepetitionConfig(Section):
    """Gopher-style repetition statistics on prose (Rae et al. 2021, Table A1), relaxed for SFT answers."""

    enabled: bool = Field(
        default=True, description="Drop records whose prose repeats itself (degenerate loops)."
    )
    min_words: int = Field(
        default=50,
        ge=1,
        description="Prose shorter than this is not tested: the statistics mean nothing on a few sentences. 50 is "
        "Gopher's minimum document length.",
    )
    max_chars: int = Field(
        default=4_000,
        ge=500,
        description="At most this many characters of prose are analysed: the first and last halves of longer "
        "prose (a loop runs to the end of an answer). 4,000 characters (~650 words) are plenty for the "
        "statistics and keep the rule fast on long answers (LIMA's longest tenth are over 7,000).",
    )
    max_dup_line_frac: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Maximum fraction of non-blank prose lines that repeat an earlier line (Gopher: 0.3). "
        "Relaxed: a song with its chorus sung three or four times reaches 0.40 in Alpaca; a loop that fills "
        "the answer is near 1.",
    )
    max_dup_line_char_frac: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Maximum fraction of line characters in repeated lines (Gopher: 0.2; curated SFT answers "
        "reach 0.48 with repeated choruses).",
    )
    max_top_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {2: 0.6, 3: 0.54, 4: 0.48},
        description="n -> maximum fraction of the prose's characters covered by the most frequent word n-gram "
        "(Gopher: 2: 0.20, 3: 0.18, 4: 0.16). Tripled: expected program outputs and lists of headlines in "
        "curated sets reach 0.41, while stutter ('very very very ...') is near 1.",
    )
    max_dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.5, 6: 0.5, 7: 0.5, 8: 0.5, 9: 0.5, 10: 0.5},
        description="n -> maximum fraction of the prose's characters in word n-grams that occurred earlier "
        "(Gopher: 5: 0.15 down to 10: 0.10). One flat 0.5: parallel list items, songs and spec tables in "
        "curated SFT sets repeat long phrases verbatim (up to 0.46 for 5- to 10-grams), while a degenerate "
        "loop repeats most of the answer (0.8 after five rounds).",
    )


class SymbolRatioConfig(Section):
    """Gopher's symbol statistics on prose: too many hashes/ellipses, too few words with letters or digits."""

    enabled: bool = Field(default=True, description="Drop records whose prose is mostly symbols.")
    min_words: int = Field(
        default=50,
        ge=1,
        description="Prose shorter than this is not tested (Gopher's minimum document length): a tweet with "
        "three hashtags or a one-line formula is fine.",
    )
    max_chars: int = Field(
        default=4_000,
        ge=500,
        description="At most this many characters of prose are analysed (the first and last halves of longer "
        "prose), as for `repetition`: the ratios are stable long before that.",
    )
    max_hash_ratio: float = Field(
        default=0.25,
        gt=0,
        description="Maximum '#' per word, not counting Markdown heading markers (Gopher: 0.1). Relaxed: "
        "'write a tweet' tasks answer with hashtags (0.15 in Alpaca); a tag cloud is near 1.",
    )
    max_ellipsis_ratio: float = Field(
        default=0.2,
        gt=0,
        description="Maximum '...'/'…' per word (Gopher: 0.1). Relaxed for dialogue and role-play with pauses "
        "(the shared SFT sets reach 0.04); lists of truncated snippets are far above.",
    )
    min_word_frac: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Minimum fraction of words that contain a letter or a digit (Gopher: 0.8 of words with a "
        "letter). Digits count here so that math ('3 + 4 = 7') and numeric lists pass, and Markdown structure "
        "(table pipes, bullets, rules) and math operators are left out of the count. Relaxed to 0.5: emoji "
        "bullet lists in LIMA go down to 0.89; symbol soup and emoji spam are far below.",
    )


class RefusalConfig(Section):
    """Refusals and AI disclaimers in assistant turns."""

    enabled: bool = Field(default=True, description="Drop records where the assistant refuses or disclaims.")
    start_chars: int = Field(
        default=200,
        ge=0,
        description="Apologetic refusals ('I'm sorry, but I can't help ...') count only at a sentence start "
        "within this many characters of the start of an answer, where real refusals stand, and not when the task "
        "asks for such a sentence (translate, rewrite, a letter, a dialogue, role-play, an excuse). AI "
        "disclaimers ('As an AI language model', 'As an AI, I don't ...') count anywhere unless the task casts "
        "the answerer as an AI.",
    )
    extra_phrases: list[str] = Field(
        default_factory=list,
        description="More phrases that mark a refusal anywhere in an assistant turn (case-insensitive substrings).",
    )


class TruncatedConfig(Section):
    """An answer that was cut off: unclosed code fence, finish_reason=length, or prose that stops mid-sentence."""

    enabled: bool = Field(default=True, description="Drop records whose answer looks cut off.")
    check_fences: bool = Field(
        default=True, description="Fire on an assistant turn with an unclosed ``` or ~~~ fence."
    )
    check_finish_reason: bool = Field(
        default=True, description="Fire when meta.finish_reason is 'length' (set by the synth stage)."
    )
    check_mid_sentence: bool = Field(
        default=True,
        description="Fire when a long prose answer ends in the middle of a sentence (no end punctuation; lists, "
        "headings, tables, code, sign-offs and short last lines are exempt).",
    )
    min_words: int = Field(
        default=80,
        ge=1,
        description="The mid-sentence check applies to answers of at least this many words when the last line "
        "stops on a function word or a comma ('... the importance of'): cuts happen at a max-token limit, and "
        "short answers ('Paris', a title, a list of words) legitimately lack a period.",
    )
    min_words_any_end: int = Field(
        default=300,
        ge=1,
        description="Answers of at least this many words also count as cut when the last line stops on any "
        "other word. Humans often omit a final period (LIMA has several such answers of 200-290 words); an "
        "answer stopped by a generation limit is long (Alpaca-GPT4's cut answers have 370-430 words, about "
        "512 tokens).",
    )
    min_last_line_words: int = Field(
        default=8,
        ge=1,
        description="The last line must have at least this many words to count as a cut sentence (short last "
        "lines are names, sign-offs, poem lines or labels).",
    )


class NeedsModalityConfig(Section):
    """Instructions that need something a text model cannot see, hear, open or produce."""

    enabled: bool = Field(default=True, description="Drop records whose instruction needs another modality.")
    check_urls: bool = Field(
        default=True,
        description="Fire on an instruction that asks to open a URL ('Go to https://... and summarise', "
        "'Summarize this article.' + a bare link), unless it is a coding or tool-use task, the answer is code, "
        "or the task is about the URL itself (its domain, its format).",
    )
    check_output: bool = Field(
        default=True,
        description="Fire on an instruction that asks to draw, paint, photograph, plot or film something, unless "
        "it asks for code or ASCII art (Self-Instruct's 'draw', 'plot', 'picture' keywords, made precise).",
    )
    meta_keys: list[str] = Field(
        default_factory=lambda: ["image", "images", "audio", "audios", "video", "videos"],
        description="Meta fields that, when non-empty, mean the record came with media the text model never "
        "sees (e.g. LLaVA's `image`).",
    )


class CleanConfig(Section):
    """The `clean` stage: normalise text, then drop records that fail a quality rule (first failing rule wins)."""

    normalize: NormalizeConfig = Field(
        default_factory=NormalizeConfig, description="Text normalisation steps."
    )
    empty_response: EmptyResponseConfig = Field(
        default_factory=EmptyResponseConfig, description="Rule `empty_response`: an empty assistant turn."
    )
    too_short: TooShortConfig = Field(
        default_factory=TooShortConfig, description="Rule `too_short`: the instruction has too few words."
    )
    too_long: TooLongConfig = Field(
        default_factory=TooLongConfig, description="Rule `too_long`: the record exceeds a training context."
    )
    repeats_instruction: RepeatsInstructionConfig = Field(
        default_factory=RepeatsInstructionConfig,
        description="Rule `repeats_instruction`: the answer echoes the instruction.",
    )
    needs_modality: NeedsModalityConfig = Field(
        default_factory=NeedsModalityConfig,
        description="Rule `needs_modality`: the instruction needs an image, audio, video, file or web page.",
    )
    refusal: RefusalConfig = Field(
        default_factory=RefusalConfig, description="Rule `refusal`: refusals and AI disclaimers in answers."
    )
    truncated: TruncatedConfig = Field(
        default_factory=TruncatedConfig, description="Rule `truncated`: the answer was cut off."
    )
    symbol_ratio: SymbolRatioConfig = Field(
        default_factory=SymbolRatioConfig, description="Rule `symbol_ratio`: prose that is mostly symbols."
    )
    repetition: RepetitionConfig = Field(
        default_factory=RepetitionConfig, description="Rule `repetition`: prose that repeats itself."
    )
    pii: PiiConfig = Field(
        default_factory=PiiConfig,
        description="PII scrubbing (`pii.py`): typed placeholders by default; `reject` per entity type -> `pii_<kind>`.",
    )
    code_parse: CodeParseConfig = Field(
        default_factory=CodeParseConfig,
        description="Code parse checks (`code.py`): a code block tree-sitter cannot parse -> `code_syntax_error`.",
    )
