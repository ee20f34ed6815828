"""Code tokens for near-duplicate detection: renamed, re-commented and reformatted code gives the same tokens,
a different program gives different ones."""

from __future__ import annotations

import pytest

from stages.clean.code import block_language, parser_for
from stages.dedup.code_tokens import code_tokens


def toks(body: str, info: str = "", languages: frozenset[str] | None = None) -> list[str]:
    return code_tokens(body, info, languages)[0]


def jaccard(a: list[str], b: list[str], n: int = 5) -> float:
    sa = {tuple(a[i : i + n]) for i in range(len(a) - n + 1)}
    sb = {tuple(b[i : i + n]) for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


BUBBLE = '''def bubble_sort(arr):
    """Sort the list in place."""
    n = len(arr)
    for i in range(n):
        # after pass i the last i items are in place
        for j in range(0, n - i - 1):
            if arr[j] > arr[j + 1]:
                arr[j], arr[j + 1] = arr[j + 1], arr[j]
    return arr
'''
BUBBLE_RENAMED = '''def bubble_sort(nums):
    """Sort the list in place."""
    n = len(nums)
    for i in range(n):
        # the largest remaining item bubbles to the end
        for j in range(0, n - i - 1):
            if nums[j] > nums[j + 1]:
                nums[j], nums[j + 1] = nums[j + 1], nums[j]
    return nums
'''
QUICKSORT = """def quicksort(arr):
    # pick a pivot and partition
    if len(arr) <= 1:
        return arr
    pivot = arr[len(arr) // 2]
    left = [x for x in arr if x < pivot]
    middle = [x for x in arr if x == pivot]
    right = [x for x in arr if x > pivot]
    return quicksort(left) + middle + quicksort(right)
"""


def test_bubble_sort_renamed_and_recommented_gives_identical_tokens():
    a, b = toks(BUBBLE, "python"), toks(BUBBLE_RENAMED, "python")
    assert a == b
    assert len(a) > 50
    assert "#" not in "".join(a) and "arr" not in a and "nums" not in a


def test_bubble_sort_and_quicksort_are_far_apart():
    a, q = toks(BUBBLE, "python"), toks(QUICKSORT, "python")
    assert jaccard(a, q) < 0.5
    assert jaccard(a, toks(BUBBLE_RENAMED, "python")) == 1.0


def test_token_shapes():
    tokens, lang = code_tokens('x = foo(x, "hi", 42, 1.5)  # note\ny = None\n', "py")
    assert lang == "python"
    assert tokens == ["v0", "=", "v1", "(", "v0", ",", "S", ",", "N", ",", "N", ")", "v2", "=", "None"]


def test_data_flow_is_kept():
    # the same names, used in other places: a different program
    assert toks("a = b + a\n", "python") != toks("a = a + b\n", "python")
    assert toks("a = b + a\n", "python") == toks("x = y + x\n", "python")


# ---- reformatting ------------------------------------------------------------------------------------------

REFORMATTED = {
    "c": (
        "int sum(int *a, int n) {\n    int s = 0;\n    for (int i = 0; i < n; i++) {\n        s += a[i];\n"
        "    }\n    return s;\n}\n",
        "int sum(int *a,int n)\n{\n  int s=0;\n\n\n  for(int i=0;i<n;i++)\n  {\n    s+=a[i];\n  }\n\n"
        "  return s;\n}",
    ),
    "java": (
        "class A {\n    int sum(int[] a) {\n        int s = 0;\n        for (int x : a) {\n"
        "            s += x;\n        }\n        return s;\n    }\n}\n",
        "class A\n{\n\tint sum( int[] a )\n\t{\n\t\tint s=0;\n\n\t\tfor(int x:a) { s+=x; }\n"
        "\t\treturn s;\n\t}\n}",
    ),
    "javascript": (
        "function sum(a) {\n  let s = 0;\n  for (const x of a) {\n    s += x;\n  }\n  return s;\n}\n",
        "function sum( a ){\n\n    let s=0;\n    for(const x of a){ s+=x; }\n\n\n    return s;\n}",
    ),
    "python": (
        "def total(a):\n    s = 0\n    for x in a:\n        s += x\n    return s\n",
        "def total( a ):\n\n  s=0\n\n  for x in a :\n      s+=x\n  return s",
    ),
}


@pytest.mark.parametrize("lang", list(REFORMATTED))
def test_reformatting_gives_identical_tokens(lang):
    a, b = REFORMATTED[lang]
    assert toks(a, lang) == toks(b, lang)
    assert len(toks(a, lang)) > 15


def test_line_continuations_and_blank_lines_are_formatting():
    assert toks("x = 1 + \\\n    2\n\n\n", "python") == toks("x = 1 + 2\n", "python")
    assert toks("x = 1 + \\\n    2\n", "text") == toks("x = 1 + 2\n", "text")


def test_indented_block_is_dedented():
    body = REFORMATTED["python"][0]
    indented = "".join("    " + line + "\n" for line in body.splitlines())
    assert toks(indented, "python") == toks(body, "python")


# ---- what changes the tokens and what does not -------------------------------------------------------------

DOC = 'def area(r):\n    """Area of a circle."""\n    return 3.14159 * r * r\n'


def test_changed_docstring_is_ignored():
    other = (
        'def area(r):\n    """Compute the area of a circle of radius r.\n\n    Returns a float.\n    """\n'
    )
    other += "    return 3.14159 * r * r\n"
    assert toks(DOC, "python") == toks(other, "python")
    assert toks(DOC, "python") == toks("def area(r):\n    return 3.14159 * r * r\n", "python")


def test_changed_literals_are_ignored():
    assert toks(DOC, "python") == toks(DOC.replace("3.14159", "3"), "python")
    a = 'printf("%d items\\n", count + 1);'
    assert toks(a, "c") == toks(a.replace("%d items", "total: %d").replace("1", "42"), "c")
    js = "const msg = `hello ${name}`; const n = 0x10;"
    assert toks(js, "js") == toks("const msg = 'bye'; const n = 7;", "js")


def test_changed_operator_changes_tokens():
    assert toks(DOC, "python") != toks(DOC.replace("3.14159 * r", "3.14159 + r"), "python")
    assert toks("int f(int a, int b) { return a + b; }", "c") != toks(
        "int f(int a, int b) { return a * b; }", "c"
    )


def test_a_lone_string_is_a_docstring_but_a_used_string_is_a_literal():
    assert toks('x = 1\n"note"\ny = 2\n', "python") == toks("x = 1\ny = 2\n", "python")
    assert toks('x = "note"\n', "python") == ["v0", "=", "S"]


# ---- rename and comment changes, per language --------------------------------------------------------------

# Templates: AAA and BBB are names, CCC a comment's text; each is replaced by two different spellings.
RENAME = {
    "python": ("def AAA(BBB):\n    # CCC\n    return [x * 2 for x in BBB if x > 0]\n", "python"),
    "javascript": (
        "function AAA(BBB) {\n  // CCC\n  return BBB.filter((x) => x > 0).map((x) => x * 2);\n}\n",
        "js",
    ),
    "typescript": (
        "function AAA(BBB: number[]): number[] {\n  /* CCC */\n  return BBB.filter((x) => x > 0);\n}\n",
        "ts",
    ),
    "java": (
        "class K {\n  // CCC\n  static int AAA(int[] BBB) {\n    int s = 0;\n    for (int v : BBB) s += v;\n"
        "    return s;\n  }\n}\n",
        "java",
    ),
    "c": (
        "#include <stdio.h>\n/* CCC */\nint AAA(const int *BBB, int n) {\n  int s = 0;\n"
        "  for (int i = 0; i < n; i++) s += BBB[i]; // CCC\n  return s;\n}\n",
        "c",
    ),
    "cpp": (
        "#include <vector>\n// CCC\nint AAA(const std::vector<int>& BBB) {\n  int s = 0;\n"
        "  for (auto v : BBB) s += v;\n  return s;\n}\n",
        "c++",
    ),
    "go": (
        "package main\n\n// CCC\nfunc AAA(BBB []int) int {\n\ts := 0\n\tfor _, v := range BBB {\n"
        "\t\ts += v\n\t}\n\treturn s\n}\n",
        "go",
    ),
    "rust": (
        "/// CCC\nfn AAA(BBB: &[i32]) -> i32 {\n    // CCC\n    BBB.iter().filter(|x| **x > 0).sum()\n}\n",
        "rust",
    ),
    "bash": (
        '# CCC\nAAA() {\n  for BBB in "$@"; do\n    echo "$BBB"\n  done\n}\nAAA a.txt b.txt  # CCC\n',
        "bash",
    ),
}
SPELLINGS = (("total", "items", "sum the items"), ("acc_fn", "values", "TODO: explain this"))


def spelled(template: str, k: int) -> str:
    a, b, c = SPELLINGS[k]
    return template.replace("AAA", a).replace("BBB", b).replace("CCC", c)


@pytest.mark.parametrize("lang", list(RENAME))
def test_rename_and_comment_change_gives_identical_tokens(lang):
    template, tag = RENAME[lang]
    first, lang_first = code_tokens(spelled(template, 0), tag)
    second, lang_second = code_tokens(spelled(template, 1), tag)
    assert lang_first == lang_second == lang
    assert first == second
    assert "v0" in first and "v1" in first
    # no name or comment word survives
    for word in ("total", "items", "sum", "acc_fn", "values", "TODO"):
        assert word not in first


def test_bash_function_names_are_numbered_where_defined_and_called():
    a = 'greet() {\n  echo "hi $1"\n}\ngreet world\n'
    b = 'say_hello() {\n  echo "hello $1"\n}\nsay_hello world\n'
    assert toks(a, "bash") == toks(b, "bash") == ["v0", "(", ")", "{", "echo", "S", "}", "v0", "world"]


def test_define_bodies_share_the_block_numbering():
    a = "#define SQUARE(x) ((x) * (x))\nint area(int side) { return SQUARE(side); }\n"
    b = "#define SQ(y) ((y) * (y))\nint surface(int w) { return SQ(w); }\n"
    assert toks(a, "c") == toks(b, "c")
    assert toks(a, "c") != toks(a.replace("(x) * (x)", "(x) + (x)"), "c")


def test_go_and_rust_literals():
    go = "package main\nfunc f() { s := `raw`; r := 'x'; n := 2.5 + 3i; println(s, r, n, \"x\") }\n"
    assert toks(go, "go").count("S") == 3 and toks(go, "go").count("N") == 2
    rust = 'fn f() { let s = r#"raw"#; let c = \'x\'; let n = 1u8; println!("{}", s); }\n'
    assert toks(rust, "rs").count("S") == 3 and toks(rust, "rs").count("N") == 1


# ---- languages, detection and the fallback -----------------------------------------------------------------


def test_untagged_python_is_detected():
    assert code_tokens(BUBBLE)[1] == "python"
    assert toks(BUBBLE) == toks(BUBBLE, "python")


def test_unknown_tag_uses_the_regex_fallback_and_is_rename_invariant():
    body = "let total = add(items, 3) # sum them\nprint total /* done */ 'x'\n"
    renamed = "let acc = add(values, 7) # another comment\nprint acc /* over */ 'yz'\n"
    tokens, lang = code_tokens(body, "brainfuck")
    assert lang is None
    assert tokens == toks(renamed, "brainfuck")
    assert tokens == ["v0", "v1", "=", "v2", "(", "v3", ",", "N", ")", "v4", "v1", "S"]
    assert toks(body, "brainfuck") != toks(body.replace("=", "+="), "brainfuck")


def test_languages_restrict_the_grammars():
    assert code_tokens(BUBBLE, "python", frozenset({"c"}))[1] is None
    assert code_tokens(BUBBLE, "", frozenset({"c"}))[1] is None
    assert code_tokens(BUBBLE, "python", frozenset({"python"}))[1] == "python"
    # the fallback still gives rename-invariant tokens
    assert toks(BUBBLE, "python", frozenset()) == toks(BUBBLE_RENAMED, "python", frozenset())


def test_block_language_and_parser_for():
    assert block_language("py", "") == ("python", "python")
    assert block_language("tsx", "") == ("typescript", "tsx")
    assert block_language("brainfuck", "def f(): pass") is None
    assert block_language("", BUBBLE) == ("python", "python")
    assert block_language("", "just some words here") is None
    assert block_language("python", "x = 1", frozenset({"c"})) is None
    assert parser_for("go") is parser_for("go")


def test_broken_code_is_tokenised_from_its_tree():
    tokens, lang = code_tokens("int main() { int x = 1 return x }", "c")
    assert lang == "c"
    # the MISSING ';' gives nothing, the rest is there in order
    assert tokens == ["int", "v0", "(", ")", "{", "int", "v1", "=", "N", "return", "v1", "}"]
    tokens = toks("def f(:\n    return $x\n", "python")
    assert tokens[:3] == ["def", "v0", "("] and "$" in tokens and tokens[-1] == "v1"


def test_empty_and_odd_input():
    assert toks("", "python") == []
    assert toks("", "") == []
    assert toks("   \n\n", "c") == []
    assert toks("\ud800x = 1", "python") == ["?", "v0", "=", "N"]  # a lone surrogate does not raise


# ---- tokens never hold whitespace --------------------------------------------------------------------------

ODD = [
    ('#define GREETING  "hello world"\n#  ifdef   DEBUG\nint x;\n#endif\n', "c"),
    ("echo \"${name}\" ${name%.txt} $'a b'\ncat <<EOF\nsome text here\nEOF\n", "bash"),
    ('class A { String t = """\n   text block\n   """; }', "java"),
    ("const A = () => <div>\n  hello world\n  <b>x</b>\n</div>;", "jsx"),
    ("x = [1,\n     2]\nif x :\n\n    pass\n", "python"),
    ("for (int i = 0 i < n; i++) { a b c", "cpp"),
    (">>> x = 1\n>>> print(x)\n1\n", "pycon"),
    ("some text, with spaces\tand\ttabs", "text"),
]


@pytest.mark.parametrize(("body", "tag"), ODD)
def test_odd_blocks_give_tokens_without_whitespace(body, tag):
    tokens = toks(body, tag)
    assert tokens
    assert all(t and not any(c.isspace() for c in t) for t in tokens)


def test_no_token_holds_whitespace_over_all_samples():
    samples = [
        (BUBBLE, "python"),
        (BUBBLE_RENAMED, "python"),
        (QUICKSORT, "python"),
        (QUICKSORT, ""),
        (DOC, "py"),
    ]
    samples += [
        (body, tag) for lang, pair in REFORMATTED.items() for body in pair for tag in (lang, "", "text")
    ]
    samples += [(spelled(t, k), tag) for t, tag in RENAME.values() for k in (0, 1)]
    samples += [(spelled(t, 0), "") for t, _ in RENAME.values()]
    samples += ODD
    for body, tag in samples:
        tokens = toks(body, tag)
        assert tokens
        for t in tokens:
            assert t and not any(c.isspace() for c in t), (tag, t)
