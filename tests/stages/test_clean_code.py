"""The clean stage's code parse check: broken trained-on code rejects, everything else is kept and counted."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError

from stages.clean.code import REASON, CodeChecker, CodeParseConfig, tag_language
from stages.clean.rules import RecordView
from stages.clean.text import fenced_blocks, split_fences

CHECKER = CodeChecker(CodeParseConfig())


def chat(answer: str, prompt: str = "Write the code, please.") -> RecordView:
    return RecordView(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], "chat", {}
    )


def fenced(code: str, tag: str = "") -> str:
    return f"Here you go:\n\n```{tag}\n{code}\n```\n\nThat is all."


def kept(view: RecordView, checker: CodeChecker = CHECKER) -> dict:
    verdict, counts = checker.check(view)
    assert verdict is None, verdict
    json.dumps(counts)
    return counts


def rejected(view: RecordView, checker: CodeChecker = CHECKER) -> dict:
    verdict, counts = checker.check(view)
    assert verdict is not None, f"should reject: {counts}"
    reason, detail = verdict
    assert reason == REASON == "code_syntax_error"
    json.dumps(detail)
    assert counts["failed"] == {detail["language"]: 1}
    return detail


# One valid and one broken program per language, with the 1-based line of the first error.
VALID = {
    "python": "def add(a, b):\n    return a + b\n\nprint(add(1, 2))",
    "javascript": "function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));",
    "typescript": "function add(a: number, b: number): number {\n  return a + b;\n}\nconst s: string = 'x';",
    "java": "public class Main {\n  public static void main(String[] args) {\n    System.out.println(1);\n  }\n}",
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tx := 1\n\tfmt.Println(x)\n}',
    "rust": 'fn main() {\n    let mut v: Vec<i32> = Vec::new();\n    v.push(1);\n    println!("{:?}", v);\n}',
    "c": '#include <stdio.h>\n\nint main(void) {\n    printf("%d\\n", 1);\n    return 0;\n}',
    "cpp": "#include <iostream>\n\nint main() {\n    std::cout << 1 << std::endl;\n    return 0;\n}",
    "bash": '#!/bin/bash\nfor f in *.txt; do\n  echo "$f"\ndone\nif [ -d out ]; then\n  rm -r out\nfi',
}
BROKEN = {
    "python": ("def add(a, b):\n    return a + b\n\nif add(1, 2) > 2\n    print('big')", 4),
    "javascript": ("function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2);", 4),
    "typescript": ("function add(a: number, b: number): number {\n  return (a + b;\n}", 2),
    "java": ("public class Main {\n  void f() {\n    int x = (1 + 2;\n  }\n}", 3),
    "go": ("package main\n\nfunc main() {\n\tvar x int = = 2\n\tprintln(x)\n}", 4),
    "rust": ('fn main() {\n    let x = (1 + 2;\n    println!("{}", x);\n}', 2),
    "c": ("int main(void) {\n    int x = (1 + 2;\n    return x;\n}", 2),
    "cpp": ("#include <iostream>\nint main() {\n    std::cout << (1 + 2 << std::endl;\n}", 3),
    "bash": ('for f in *.txt; do\n  n=$(( n + 1 )\ndone\necho "$n"', 2),
}


@pytest.mark.parametrize("lang", list(VALID))
def test_valid_tagged_code_is_checked_and_kept(lang):
    counts = kept(chat(fenced(VALID[lang], lang)))
    assert counts == {"checked": {lang: 1}}


@pytest.mark.parametrize("lang", list(BROKEN))
def test_broken_tagged_code_rejects_with_language_and_first_error_line(lang):
    code, line = BROKEN[lang]
    detail = rejected(chat(fenced(code, lang)))
    assert detail["language"] == lang and detail["tag"] == lang
    assert detail["turn"] == 1 and detail["block"] == 0
    assert detail["line"] == line
    assert detail["turn_line"] == line + 3  # "Here you go:", blank line, the fence
    assert detail["text"] == code.split("\n")[line - 1].strip()
    assert detail["error"]


@pytest.mark.parametrize("lang", list(VALID))
def test_untagged_code_is_detected(lang):
    counts = kept(chat(fenced(VALID[lang])))
    assert counts == {"detected": {lang: 1}, "checked": {lang: 1}}


@pytest.mark.parametrize("lang", list(BROKEN))
def test_untagged_broken_code_is_never_rejected(lang):
    counts = kept(chat(fenced(BROKEN[lang][0])))
    assert counts.get("unchecked") == {"untagged": 1} or lang in counts.get("detected", {})


def test_untagged_prose_output_and_pseudocode_are_unchecked():
    for body in (
        "The quick brown fox jumps over the lazy dog.",
        "[1, 2, 3]\n{'a': 1}",
        "Output:\n5 8 13",
        "for each item in list:\n    if item is good then keep it\nend",
        "SELECT name FROM users WHERE id = 1;",
    ):
        counts = kept(chat(fenced(body)))
        assert "failed" not in counts and not counts.get("detected", {}).get("bash"), (body, counts)


def test_ambiguous_untagged_code_prefers_the_base_language():
    assert kept(chat(fenced("const add = (a, b) => a + b;\nconsole.log(add(1, 2));")))["detected"] == {
        "javascript": 1
    }
    ts = "interface P { x: number; y: number }\nconst p: P = { x: 1, y: 2 };\nconsole.log(p.x);"
    assert kept(chat(fenced(ts)))["detected"] == {"typescript": 1}
    c = '#include <stdio.h>\nint main(void) {\n    printf("hi\\n");\n    return 0;\n}'
    assert kept(chat(fenced(c)))["detected"] == {"c": 1}
    cpp = "#include <vector>\nusing namespace std;\nint main() {\n    vector<int> v;\n    return v.size();\n}"
    assert kept(chat(fenced(cpp)))["detected"] == {"cpp": 1}


# ---- fragments that are valid in context ------------------------------------------------------------------

FRAGMENTS = [
    ("java", "public int add(int a, int b) {\n    return a + b;\n}"),
    ("java", "@Override\npublic String toString() {\n    return name;\n}\n\nprivate int count;"),
    ("java", 'List<String> names = new ArrayList<>();\nnames.add("a");\nSystem.out.println(names);'),
    ("go", "func add(a, b int) int {\n\treturn a + b\n}"),
    ("go", "x := []int{1, 2, 3}\nfor _, v := range x {\n\tfmt.Println(v)\n}"),
    ("rust", "fn area(&self) -> u32 {\n    self.width * self.height\n}"),
    ("rust", "v.iter().map(|x| x * 2).collect::<Vec<_>>()"),
    ("c", 'int x = 5;\nprintf("%d", x);'),
    ("cpp", "std::vector<int> v{1, 2, 3};\nfor (auto& x : v) std::cout << x;"),
    ("cpp", "public:\n    void run();\nprivate:\n    int n_;"),
    ("javascript", "render() {\n  return this.props.name;\n}"),
    ("javascript", 'return <div className="app">{items.map(i => <p key={i}>{i}</p>)}</div>;'),
    ("javascript", '{\n  "name": "app",\n  "version": "1.0.0"\n}'),
    ("javascript", "const x: number = 5;  // TypeScript under a js tag"),
    ("typescript", "const App = () => <div>Hello</div>;"),
    ("tsx", "export const App = ({ name }: { name: string }) => <h1>{name}</h1>;"),
    (
        "python",
        "    def area(self):\n        return self.w * self.h\n\n    def __repr__(self):\n        return 'R'",
    ),
    ("python", "return x + 1"),
    ("python", ">>> x = [1, 2, 3]\n>>> sum(x)\n6\n>>> for i in x:\n...     print(i)\n...\n1\n2\n3"),
    ("python", "%matplotlib inline\n!pip install numpy\nimport numpy as np"),
    (
        "bash",
        "$ ls -la\ntotal 8\ndrwxr-xr-x 2 me me 4096 Jan 1 .\n$ cd src && make\nmake: Nothing to be done.",
    ),
    ("console", "$ npm install\nadded 1 package (unbalanced quote ' in output)"),
    ("c", "#include <stdio.h> \nint main(void) { return 0; }"),  # trailing blank after the include
    ("bash", 'for (( i=${#s}-1; i>=0; i-- )); do\n  r+="${s:$i:1}"\ndone'),
    ("cpp", "bool is_int(boost::any a) { return a.type() == typeid(int); }"),
]


@pytest.mark.parametrize(("tag", "code"), FRAGMENTS)
def test_fragments_valid_in_context_pass(tag, code):
    counts = kept(chat(fenced(code, tag)))
    assert "failed" not in counts and counts["checked"], counts


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("java", "public class A {\n    public void f() {\n        int x = 1;\n        ...\n    }\n}"),
        ("java", "public class A {\n    void f() { ... }\n}"),
        ("javascript", "function f(a) {\n  foo(...);\n  return a;\n}"),
        ("cpp", "int main() {\n    // setup\n    ...rest of the code\n    return 0;\n}"),
        ("c", "int x = ...;"),
        ("go", "func main() {\n\tx := f(…)\n}"),
        ("python", "def f(...):\n    pass"),
        ("python", "client = OpenAI(api_key=<YOUR_API_KEY>)"),
        ("python", "df = pd.read_csv(<path>)"),
        ("java", "String url = <your database url>;\nSystem.out.println(url);"),
        ("bash", "git clone <repo-url>\ncd <project dir>\nexport API_KEY=<your-key>"),
    ],
)
def test_placeholders_are_never_syntax_errors(tag, code):
    counts = kept(chat(fenced(code, tag)))
    assert "failed" not in counts


def test_spread_and_variadics_are_not_placeholders():
    rejected(chat(fenced("const m = Math.max(...xs;\nconsole.log(m);", "js")))
    kept(chat(fenced("const m = Math.max(...xs);\nfunction f(...args) { return [...args]; }", "js")))
    kept(chat(fenced("func f(xs ...int) int {\n\treturn g(xs...)\n}", "go")))


def test_broken_code_stays_broken_inside_wrappers():
    rejected(chat(fenced("public int add(int a, int b) {\n    return a + b;\n", "java")))  # missing }
    rejected(chat(fenced("x := []int{1, 2\nfmt.Println(x)", "go")))
    rejected(chat(fenced("render() {\n  return this.props.name;\n", "jsx")))


def test_program_output_under_a_language_tag_is_not_code():
    counts = kept(chat("Output:\n```c\n6 4 6 3 4 10 1 124\n```\n\nand\n```java\n[abc, bacd, array]\n```"))
    assert counts == {"unchecked": {"not_code": 2}}


def test_prose_mixed_into_a_code_block_rejects():
    answer = fenced(
        "1. Import the library.\n    import nltk\n2. Tokenize.\n    words = nltk.word_tokenize(text)", "py"
    )
    assert rejected(chat(answer))["line"] == 1


# ---- which turns, which tags -------------------------------------------------------------------------------


def test_code_in_user_turns_is_never_judged():
    prompt = "Fix the bug in this code:\n```python\ndef f(x)\n    return x +\n```"
    counts = kept(chat(fenced("def f(x):\n    return x + 1", "python"), prompt=prompt))
    assert counts == {"unchecked": {"prompt": 1}, "checked": {"python": 1}}
    system = {"role": "system", "content": "```python\ndef broken(\n```"}
    view = RecordView([system, *chat("Sure.").messages], "chat", {})
    assert kept(view) == {}


def test_error_in_a_later_turn_and_block_is_located():
    messages = [
        {"role": "user", "content": "Write two functions."},
        {"role": "assistant", "content": fenced("def f():\n    return 1", "python")},
        {"role": "user", "content": "And in JavaScript?"},
        {
            "role": "assistant",
            "content": "First:\n```js\nlet a = 1;\n```\nSecond:\n```js\nlet b = [1, 2;\n```",
        },
    ]
    detail = rejected(RecordView(messages, "chat", {}))
    assert (detail["turn"], detail["block"], detail["line"], detail["turn_line"]) == (3, 1, 1, 7)
    assert detail["language"] == "javascript" and detail["tag"] == "js"


@pytest.mark.parametrize(
    ("tag", "lang"),
    [
        ("py", "python"),
        ("python3", "python"),
        ("Python", "python"),
        ("{.python}", "python"),
        ("language-python", "python"),
        ("js", "javascript"),
        ("jsx", "javascript"),
        ("node", "javascript"),
        ("ts", "typescript"),
        ("tsx", "typescript"),
        ("c++", "cpp"),
        ("cc", "cpp"),
        ("hpp", "cpp"),
        ("golang", "go"),
        ("rs", "rust"),
        ("sh", "bash"),
        ("shell", "bash"),
        ("zsh", "bash"),
        ("console", "bash"),
    ],
)
def test_tag_aliases(tag, lang):
    assert tag_language(tag)[1] == lang
    assert tag_language("tsx")[2] == "tsx"  # the TSX grammar for tsx blocks


@pytest.mark.parametrize(
    "tag", ["sql", "json", "html", "yaml", "text", "plaintext", "output", "diff", "csharp"]
)
def test_unsupported_tags_are_unchecked_never_rejected(tag):
    counts = kept(chat(fenced("this { is ( not valid code in any language", tag)))
    assert counts == {"unchecked": {f"unsupported:{tag}": 1}}


def test_unfenced_code_answers_are_counted_never_rejected():
    valid, broken = (
        "def add(a, b):\n    return a + b\n\nprint(add(1, 2))",
        "def add(a, b)\n    return a + b\n",
    )
    assert kept(chat(valid)) == {"unchecked": {"unfenced": 1}}  # default: counted, not parsed
    assert kept(chat(broken)) == {"unchecked": {"unfenced": 1}}
    assert kept(chat("Paris is the capital of France.")) == {}
    checker = CodeChecker(CodeParseConfig(check_unfenced=True))
    assert kept(chat(valid), checker) == {"detected": {"python": 1}, "checked": {"python": 1}}
    assert kept(chat(broken), checker) == {"unchecked": {"unfenced": 1}}


def test_code_records_check_their_document():
    broken = RecordView(
        [{"role": "user", "content": "def f(x)\n    return x"}], "code", {"language": "python"}
    )
    detail = rejected(broken)
    assert (detail["turn"], detail["line"], detail["language"]) == (0, 1, "python")
    ok = RecordView([{"role": "user", "content": "def f(x):\n    return x"}], "code", {"language": "python"})
    assert kept(ok) == {"checked": {"python": 1}}
    untagged = RecordView([{"role": "user", "content": "def f(x)\n    return x"}], "code", {})
    assert kept(untagged) == {"unchecked": {"untagged": 1}}
    fenced_doc = RecordView([{"role": "user", "content": fenced("let x = (1;", "js")}], "code", {})
    rejected(fenced_doc)
    text = RecordView([{"role": "user", "content": fenced("let x = (1;", "js")}], "text", {})
    assert kept(text) == {}


# ---- config ------------------------------------------------------------------------------------------------


def test_disabled_checks_nothing():
    checker = CodeChecker(CodeParseConfig(enabled=False))
    assert checker.check(chat(fenced(BROKEN["python"][0], "python"))) == (None, {})


def test_languages_left_out_are_unchecked_and_not_detected():
    checker = CodeChecker(CodeParseConfig(languages=["python"]))
    assert kept(chat(fenced(BROKEN["java"][0], "java")), checker) == {"unchecked": {"disabled:java": 1}}
    assert kept(chat(fenced(VALID["java"])), checker) == {"unchecked": {"untagged": 1}}
    rejected(chat(fenced(BROKEN["python"][0], "python")), checker)


def test_detection_off_counts_untagged_blocks_unchecked():
    checker = CodeChecker(CodeParseConfig(detect_untagged=False))
    assert kept(chat(fenced(VALID["python"])), checker) == {"unchecked": {"untagged": 1}}
    assert kept(chat(VALID["python"]), checker) == {"unchecked": {"unfenced": 1}}


def test_long_and_unclosed_blocks_are_unchecked():
    checker = CodeChecker(CodeParseConfig(max_block_chars=20))
    assert kept(chat(fenced(BROKEN["python"][0], "python")), checker) == {"unchecked": {"too_long": 1}}
    assert kept(chat("```python\ndef f(x)\n    return")) == {"unchecked": {"unclosed": 1}}


def test_config_refuses_unknown_keys_and_languages():
    with pytest.raises(ValidationError):
        CodeParseConfig(enable=True)
    with pytest.raises(ValidationError):
        CodeParseConfig(languages=["cobol"])
    assert all(f.description for f in CodeParseConfig.model_fields.values())


def test_checker_pickles_after_use():
    checker = CodeChecker(CodeParseConfig())
    checker.check(chat(fenced(VALID["python"], "python")))
    clone = pickle.loads(pickle.dumps(checker))
    rejected(chat(fenced(BROKEN["rust"][0], "rust")), clone)


# ---- code is parsed, never run -----------------------------------------------------------------------------


def test_code_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    blocks = {
        "python": f"import os\nos.system('touch {marker}')\nopen('{marker}', 'w').write('x')",
        "bash": f"touch {marker}\necho hi > {marker}",
        "javascript": f"require('fs').writeFileSync('{marker}', 'x');",
        "": f"import os\nos.system('touch {marker}')",
    }
    for tag, code in blocks.items():
        kept(chat(fenced(code, tag)))
        kept(chat(f"import os\nos.system('touch {marker}')"))
    assert not marker.exists()


# ---- text.fenced_blocks ------------------------------------------------------------------------------------


def test_fenced_blocks_carry_info_and_first_line():
    text = "Intro\n```python\nx = 1\n```\nmid\n~~~\nplain\n~~~\n```int y = 2;\nreturn y;```\n```js\nopen"
    blocks = fenced_blocks(text)
    assert [(b.info, b.body, b.line, b.closed) for b in blocks] == [
        ("python", "x = 1", 3, True),
        ("", "plain", 7, True),
        ("", "int y = 2;\nreturn y;", 9, True),
        ("js", "open", 12, False),
    ]
    assert split_fences(text)[1] == [b.body for b in blocks]
    assert fenced_blocks("no fences here") == []
