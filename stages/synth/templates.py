"""The prompt templates of `synth`: loading them from files, their version ids, and rendering.

Every prompt the methods send is a text file in `stages/synth/templates/` (one file per prompt, named
`<name>.txt`); a config's `stages.synth.templates` folder replaces any of them by a file of the same name there.
A template's `version` is the first 8 hex digits of the SHA-256 of its text, so a record's lineage names the exact
prompt it came from, and an edited template changes every request (and so never reuses a cached answer).

Placeholders are `{name}` with `name` a Python identifier, filled by `Template.render(**fields)`. Only that form is
a placeholder: every other brace is literal, so JSON, code or a set literal in a template needs no escaping (unlike
`str.format`); `{{name}}` writes a literal `{name}`. A template's text is its file's content less one final
newline (editors add it). An override may use only the placeholders of the built-in template it replaces (a typo
is an error at load, naming the file and the key); rendering with a placeholder left unfilled is a ValueError
naming the template and the key. Fields a template does not use are ignored, so an override may leave one out.

Where each built-in template comes from (the methods' modules say how they are used):
- `self_instruct_generate`, `self_instruct_is_classification`, `self_instruct_instances_input_first`,
  `self_instruct_instances_output_first`: Self-Instruct (Wang et al. 2022), yizhongw/self-instruct
  `self_instruct/bootstrap_instructions.py` (encode_prompt) and `self_instruct/templates/clf_task_template.py`,
  `instance_gen_template.py` (Apache-2.0), verbatim apart from the placeholders.
- `evol_add_constraints`, `evol_deepening`, `evol_concretizing`, `evol_increased_reasoning_steps`, `evol_breadth`:
  WizardLM (Xu et al. 2023), nlpxucan/WizardLM `Evol_Instruct/depth.py`, `breadth.py`, with `\\r\\n` and the
  indentation that leaked into those strings made plain newlines, and a stray quote after the add-constraints method
  removed. `evol_complicate_input` and `evol_equality` are the paper's Appendix prompts (complicating input with a
  data format; the equality check of elimination case 1); `evol_answer` is the bare instruction.
- `oss_instruct`, `oss_instruct_system`: Magicoder (Wei et al. 2023), ise-uiuc/magicoder `data/prompt.txt` and the
  SYSTEM of `src/magicoder/generate_data.py` (MIT), with the snippet's language added as the fence's info string.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from factory.errors import UserError

Messages = list[tuple[str, str]]  # a prompt: (role, content) pairs, what every method builds
Verdict = tuple[str, dict]  # a filter's rejection: (reason, detail)

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"

# {{name}} (an escaped literal) or {name} (a placeholder); any other brace is plain text.
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")

# The templates each method sends, for lineage (`versions`).
BY_METHOD: dict[str, tuple[str, ...]] = {
    "self_instruct": (
        "self_instruct_generate",
        "self_instruct_is_classification",
        "self_instruct_instances_input_first",
        "self_instruct_instances_output_first",
    ),
    "evol_instruct": (
        "evol_add_constraints",
        "evol_deepening",
        "evol_concretizing",
        "evol_increased_reasoning_steps",
        "evol_complicate_input",
        "evol_breadth",
        "evol_equality",
        "evol_answer",
    ),
    "oss_instruct": ("oss_instruct_system", "oss_instruct"),
}


class TemplateError(UserError, ValueError):
    """A template that cannot be loaded or rendered: the message names the template (and file, and key).

    A UserError (the CLI's exit 2, one line) and a ValueError."""


def placeholders(text: str) -> frozenset[str]:
    """The placeholder names of a template text (escaped `{{name}}` excluded)."""
    return frozenset(m.group(2) for m in _PLACEHOLDER.finditer(text) if m.group(2))


@dataclass(frozen=True, slots=True)
class Template:
    """One prompt template: its name, text, the file it was read from, and its version id."""

    name: str
    text: str
    path: Path

    @property
    def version(self) -> str:
        """First 8 hex digits of the SHA-256 of the text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:8]

    @property
    def fields(self) -> frozenset[str]:
        """The placeholders `render` fills."""
        return placeholders(self.text)

    def render(self, **fields: object) -> str:
        """The text with each `{name}` replaced by `str(fields[name])`; a missing field is a TemplateError."""

        def sub(m: re.Match) -> str:
            if m.group(1):
                return "{" + m.group(1) + "}"
            key = m.group(2)
            if key not in fields:
                given = ", ".join(sorted(fields)) or "none"
                raise TemplateError(
                    f"template {self.name} ({self.path}): placeholder {{{key}}} has no value (given: {given})"
                )
            return str(fields[key])

        return _PLACEHOLDER.sub(sub, self.text)


# (path, mtime_ns, size) -> Template: the builders load a template per request, a stat is cheaper than a read.
_CACHE: dict[tuple[str, int, int], Template] = {}


def _read(name: str, path: Path) -> Template:
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        hit = _CACHE.get(key)
        if hit is not None and hit.name == name:
            return hit
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"template {name}: cannot read {path}: {e}") from None
    if text.endswith("\n"):
        text = text[:-1]
    tpl = Template(name=name, text=text, path=path)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[key] = tpl
    return tpl


def load(name: str, override_dir: Path | str | None = None) -> Template:
    """The template `name`: `override_dir/<name>.txt` when that file exists, else the built-in one.

    An override folder that does not exist, an unknown template name, or an override using a placeholder the
    built-in template does not have is a TemplateError."""
    builtin_path = BUILTIN_DIR / f"{name}.txt"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not builtin_path.is_file():
        known = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.txt")))
        raise TemplateError(f"unknown template {name!r} (known: {known})")
    builtin = _read(name, builtin_path)
    if override_dir is None:
        return builtin
    folder = Path(override_dir)
    if not folder.is_dir():
        raise TemplateError(f"stages.synth.templates: {folder}: no such folder")
    path = folder / f"{name}.txt"
    if not path.is_file():
        return builtin
    tpl = _read(name, path)
    unknown = tpl.fields - builtin.fields
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in sorted(builtin.fields))
        bad = ", ".join("{" + f + "}" for f in sorted(unknown))
        raise TemplateError(
            f"template {name} ({path}): unknown placeholder {bad}; this template has {allowed}"
        )
    return tpl


def check_dir(override_dir: Path | str) -> list[str]:
    """Validate an override folder up front: every `*.txt` must name a built-in template and load cleanly.
    Returns the names it overrides; raises TemplateError on the first bad file."""
    folder = Path(override_dir)
    if not folder.is_dir():
        raise TemplateError(f"stages.synth.templates: {folder}: no such folder")
    names = sorted(p.stem for p in folder.glob("*.txt"))
    for name in names:
        load(name, folder)
    return names


def versions(method: str, override_dir: Path | str | None = None) -> dict[str, str]:
    """{template name: version} of the templates `method` sends (for lineage and the manifest)."""
    return {name: load(name, override_dir).version for name in BY_METHOD[method]}
