"""How well the clean stage's PII scrubbing finds PII, leaves look-alikes alone, and how fast it runs. ONE JSON line.

    .venv/bin/python tests/benchmarks/pii_eval.py [--data ../shared/data] [--verbose]

`evaluate(data_dir)` (reused by `bench_clean.py`) measures, with the default `PiiConfig`:
- `labelled`: recall and precision per entity kind on presidio-research's span-labelled sets
  (`pii/presidio_synth_dataset_v2.json`, `pii/presidio_generated_large.json`); their types are mapped to ours
  (EMAIL_ADDRESS->email, PHONE_NUMBER->phone, IP_ADDRESS->ip_address, CREDIT_CARD->credit_card,
  IBAN_CODE->iban, US_SSN->us_ssn), the others (PERSON, ADDRESS, DATE_TIME, ... : no NER here) are ignored.
  A gold span counts as found when a finding of its kind overlaps it; a finding counts as correct when it
  overlaps a gold span of its kind.
- `planted`: values of ten kinds (email, phone, ipv4, ipv6, credit_card, iban, us_ssn, api_token, private_key,
  url_password) generated at random (valid checksums, varied formats) and planted into Alpaca and CodeAlpaca
  records, in prose or code, with and without context words. Recall = the whole value is covered by a finding of
  its kind (so nothing of it survives); precision = findings that overlap a planted value of their kind.
- `lookalikes`: strings that look like PII and are not (versions, example addresses, dates, hashes, UUIDs,
  order numbers, ISBNs, timestamps, ports, CSS colours, base64, placeholders, ...), planted the same way;
  survival = the string is still in the output verbatim.
- `plain_changed`: share of unmodified records of every shared SFT set that scrubbing changes, by kind found.
- `speed`: records/s of `scrub_messages` on one core on Alpaca + CodeAlpaca with the pre-screen (the default) and
  without it (presidio on every text; on a sample), the share of texts the pre-screen passes to presidio, and
  whether both give the same outputs.
- `presidio_defaults`: the baseline, presidio's predefined recognizers on 1,000 plain Alpaca / CodeAlpaca records
  (blank spaCy, no NER): share of records it would change, by entity type, and records/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared_data import SHARED_DATA, read_json  # noqa: E402

from stages.clean.pii import PiiConfig, PiiScrubber  # noqa: E402
from stages.clean.pii_recognizers import luhn_ok  # noqa: E402

GOLD_KIND = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IP_ADDRESS": "ip_address",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
}
LABELLED = ["pii/presidio_synth_dataset_v2.json", "pii/presidio_generated_large.json"]
SFT = {
    "alpaca": "sft/alpaca/alpaca_data_subset5000.json",
    "alpaca_gpt4_sample": "sft/alpaca_gpt4_sample/alpaca_en_demo.json",
    "lima": "sft/lima/lima.json.gz",
    "codealpaca": "sft/codealpaca/code_alpaca_2k.json",
    "gpteacher_codegen": "sft/gpteacher/codegen-instruct.json.gz",
    "gpteacher_roleplay": "sft/gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz",
    "gpteacher_toolformer": "sft/gpteacher/toolformer-dedupe-only-dataset.json.gz",
    "sharegpt_dummy": "sft/sharegpt/dummy_conversation.json",
}
PLANT_KIND = {
    "email": "email",
    "phone": "phone",
    "ipv4": "ip_address",
    "ipv6": "ip_address",
    "credit_card": "credit_card",
    "iban": "iban",
    "us_ssn": "us_ssn",
    "api_token": "secret",
    "private_key": "secret",
    "url_password": "secret",
}


# ---- data ------------------------------------------------------------------------------------------------------


def to_messages(row: dict) -> list[dict[str, str]]:
    if "conversations" in row:
        roles = {
            "human": "user",
            "user": "user",
            "gpt": "assistant",
            "assistant": "assistant",
            "system": "system",
        }
        return [{"role": roles.get(t["from"], "user"), "content": t["value"]} for t in row["conversations"]]
    prompt = row.get("instruction", "")
    if row.get("input"):
        prompt += "\n\n" + row["input"]
    messages = []
    for q, a in row.get("history") or []:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    answer = row.get("output", row.get("response", ""))
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def sft_records(data_dir: Path, name: str, limit: int | None = None) -> list[list[dict[str, str]]]:
    rows = read_json(data_dir / SFT[name])
    return [to_messages(r) for r in rows[:limit]]


# ---- value generators ------------------------------------------------------------------------------------------

FIRST = ["jane", "li", "omar", "maria", "kenji", "sven", "aisha", "pablo", "olga", "tom", "noura", "raj"]
LAST = ["doe", "wang", "haddad", "rossi", "sato", "lindqvist", "okafor", "garcia", "ivanova", "nguyen"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "protonmail.com", "acme-corp.io", "uni-heidelberg.de",
           "mail.ru", "web.de", "company.org", "fastmail.fm", "icloud.com", "hospital.nhs.uk"]  # fmt: skip


def gen_email(rng: random.Random) -> str:
    f, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [f"{f}.{last}", f"{f}_{last}{rng.randint(1, 99)}", f"{f[0]}{last}", f"{f}.{last}+news"]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def gen_phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    # no toll-free 8xx area codes and no 555: those reach no person, the scrubber leaves them
    a, b = f"{rng.randint(2, 7)}{d(2)}", f"{rng.randint(2, 9)}{d(2)}"
    return rng.choice(
        [
            f"({a}) {b}-{d(4)}",
            f"{a}-{b}-{d(4)}",
            f"{a}.{b}.{d(4)}",
            f"+1 {a}-{b}-{d(4)}",
            f"+1 ({a}) {b}-{d(4)}",
            f"1-{a}-{b}-{d(4)}",
            f"+1{a}{b}{d(4)}",
            f"+44 20 {rng.randint(7, 8)}{d(3)} {d(4)}",
            f"+44 7{d(3)} {d(6)}",
            f"07{d(3)} {d(3)} {d(3)}",
            f"020 {rng.randint(7, 8)}{d(3)} {d(4)}",
            f"+49 30 {d(8)}",
            f"+49 (0)89 {d(4)} {d(4)}",
            f"030 {d(8)}",
            f"+33 {rng.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"0{rng.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"0{rng.randint(6, 7)}.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
            f"+91 9{d(4)} {d(5)}",
            f"+61 2 {d(4)} {d(4)}",
            f"(02) {d(4)} {d(4)}",
            f"+81 3-{d(4)}-{d(4)}",
            f"{a}-{b}-{d(4)} ext. {d(3)}",
        ]
    )


def gen_ipv4(rng: random.Random) -> str:
    import ipaddress

    while True:
        ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if ip.is_global and min(int(o) for o in str(ip).split(".")) >= 1 and int(str(ip).split(".")[0]) >= 11:
            return str(ip)


def gen_ipv6(rng: random.Random) -> str:
    import ipaddress

    while True:
        ip = ipaddress.IPv6Address((0x2000 + rng.randint(0, 0xFFF)) << 112 | rng.getrandbits(112))
        if ip.is_global and not str(ip).startswith("2001:db8"):
            break
    if rng.random() < 0.5:
        return ip.exploded
    groups = ip.exploded.split(":")
    groups[3:6] = ["0", "0", "0"]
    return str(ipaddress.IPv6Address(":".join(groups)))  # compressed: 2a02:6b8:1f2::91:b3c


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_ok(body + check):
            return body + check
    raise AssertionError


def gen_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                                 ("6011", 16), ("65", 16), ("3530", 16), ("4", 13)])  # fmt: skip
    n = luhn_complete(prefix, length, rng)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return n
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join([n[:4], n[4:10], n[10:]])
    return sep.join(n[i : i + 4] for i in range(0, length, 4))


IBAN_FORMATS = {"DE": "18n", "GB": "4a14n", "FR": "23n", "NL": "4a10n", "ES": "20n", "IT": "1a22n", "CH": "17n",
                "BE": "12n", "AT": "16n", "PL": "24n"}  # fmt: skip


def gen_iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    bban = ""
    for part in IBAN_FORMATS[country].replace("a", "a ").replace("n", "n ").split():
        n, t = int(part[:-1]), part[-1]
        bban += "".join(rng.choice(string.ascii_uppercase if t == "a" else string.digits) for _ in range(n))
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Random characters with every class (lower, upper, digit) the alphabet has."""
    classes = [f for f in (str.isdigit, str.isupper, str.islower) if any(f(c) for c in alphabet)]
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        if all(any(f(c) for c in s) for f in classes):
            return s


def gen_token(rng: random.Random) -> str:
    upper_digits = string.ascii_uppercase + string.digits
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(
        json.dumps({"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(1.5e9, 1.8e9)}).encode()
    ).decode()
    return rng.choice(
        [
            "ghp_" + _rand(rng, 36),
            "gho_" + _rand(rng, 36),
            "ghs_" + _rand(rng, 36),
            "github_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59),
            "AKIA" + "".join(rng.choice(upper_digits) for _ in range(15)) + "Q",
            f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-" + _rand(rng, 24),
            "sk_live_" + _rand(rng, 24),
            "rk_live_" + _rand(rng, 24),
            "sk-" + _rand(rng, 48),
            "sk-proj-" + _rand(rng, 64, string.ascii_letters + string.digits + "_-"),
            "AIza" + _rand(rng, 35, string.ascii_letters + string.digits + "_-"),
            "hf_" + _rand(rng, 34, string.ascii_letters),
            f"{header}.{payload.rstrip('=')}.{_rand(rng, 43, string.ascii_letters + string.digits + '_-')}",
        ]
    )


def gen_private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = [_rand(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(rng.randint(3, 8))]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


def gen_url_password(rng: random.Random) -> str:
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb", "redis", "amqp", "https", "ftp"])
    user = rng.choice(["admin", "app", "deploy", rng.choice(FIRST)])
    pw = _rand(rng, rng.randint(10, 20), string.ascii_letters + string.digits + "!-_.~")
    host = rng.choice(["db.internal", "prod-db.acme-corp.io", "cache.svc.cluster.local", "rabbit.acme.net"])
    return f"{scheme}://{user}:{pw}@{host}:{rng.randint(1000, 9999)}/{rng.choice(['app', 'main', 'orders'])}"


GENERATORS = {
    "email": gen_email,
    "phone": gen_phone,
    "ipv4": gen_ipv4,
    "ipv6": gen_ipv6,
    "credit_card": gen_card,
    "iban": gen_iban,
    "us_ssn": gen_ssn,
    "api_token": gen_token,
    "private_key": gen_private_key,
    "url_password": gen_url_password,
}
PROSE = {
    "email": ["Please send the report to {v} by Friday.", "Contact: {v}", "My email is {v} if you need more.",
              "cc {v}"],
    "phone": ["Call me at {v} tomorrow.", "Phone: {v}", "You can reach our office on {v}.",
              "Her number is {v}.", "For questions: {v}."],
    "ipv4": ["The server runs at {v} now.", "Block traffic from {v} in the firewall.", "ssh deploy@{v}",
             "Our public IP is {v}."],
    "ipv6": ["The server runs at {v} now.", "Allow {v} in the firewall.", "Its address is {v}."],
    "credit_card": ["Charge it to my card {v}, please.", "Card number: {v}", "I paid with {v} yesterday."],
    "iban": ["Transfer the money to {v}.", "IBAN: {v}", "My account is {v}, thanks."],
    "us_ssn": ["My SSN is {v}.", "SSN: {v}", "Social security number {v} was on the form."],
    "api_token": ["Use the key {v} for the API.", "Here is my token: {v}", "export TOKEN={v}"],
    "private_key": ["Here is the key:\n{v}\n", "{v}"],
    "url_password": ["Connect with {v} and run the migration.", "DATABASE_URL={v}"],
}  # fmt: skip
CODE = {
    "email": ['ADMIN_EMAIL = "{v}"', "# maintainer: {v}", 'send_mail(to="{v}")'],
    "phone": ['SUPPORT_PHONE = "{v}"', "// call {v} for support", 'phone = "{v}"'],
    "ipv4": ['HOST = "{v}"', 'requests.get("http://{v}:8080/health")', "server {v};"],
    "ipv6": ['HOST = "{v}"', 'sock.connect(("{v}", 443))'],
    "credit_card": ['card_number = "{v}"', "# test with {v}"],
    "iban": ['iban = "{v}"', "ACCOUNT = '{v}'"],
    "us_ssn": ['ssn = "{v}"', "# SSN {v}"],
    "api_token": ['API_KEY = "{v}"', 'headers = {{"Authorization": "Bearer {v}"}}', "token: {v}"],
    "private_key": ['KEY = """{v}"""', "{v}"],
    "url_password": ['DATABASE_URL = "{v}"', 'engine = create_engine("{v}")'],
}  # fmt: skip

# Strings that look like PII and are not; each must come out verbatim.
LOOKALIKES = {
    "version": ["pip install requests==2.31.0.1", "pip install x==1.2.3.4", "npm i lodash@4.17.21",
                "Python 3.11.4", "version 10.2.14.3", "upgrade to v1.2.3.4", "see section 4.2.1.3",
                "Chrome 120.0.6099.109", "build 6.1.7601.17514"],
    "example_email": ["user@example.com", "test@example.org", "jane@mail.example.net", "git@github.com:org/repo.git",
                      "noreply@example.com"],
    "date_time": ["2023-04-15", "15/04/2023", "April 15, 2023", "2023-04-15T10:30:00Z", "15.04.2023",
                  "2021-12-31 23:59:59", "04/15/2023 10:30 AM"],
    "hash": ["d41d8cd98f00b204e9800998ecf8427e", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
             "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "git checkout a1b2c3d"],
    "uuid": ["123e4567-e89b-12d3-a456-426614174000", "550e8400-e29b-41d4-a716-446655440000"],
    "order_number": ["Order #123456789", "order no. 555-123-4567", "invoice INV-2023-004512",
                     "tracking number 1Z999AA10123456784", "ticket 4820-1193-77"],
    "isbn": ["ISBN 978-3-16-148410-0", "ISBN-10: 0-306-40615-2", "ISBN 9780306406157"],
    "timestamp": ["1697371200", "1697371200123", "ts=1700000000000"],
    "number": ["12345678", "population 38005238", "2^64 = 18446744073709551616", "3.14159265358979",
               "1,234,567.89", "12345 * 6789 = 83810205", "x = 555-1234", "555-1234", "F1", "x2", "0.0001234"],
    "port": ["localhost:8080", "127.0.0.1:5000", "0.0.0.0:8000", "http://localhost:3000/api", "[::1]:8080"],
    "code": ["np.array([1, 2, 3])", "x@self.weight", "A @ B.T", "@app.route('/users')", "std::vector<int>",
             "a[1::2]", "arr[::2]", "color: #ff5733;", "rgb(255, 87, 51)", "0xDEADBEEF", "chmod 0755 file"],
    "base64": ["aGVsbG8gd29ybGQ=", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
               "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"],
    "placeholder": ["sk-your-api-key-here", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "YOUR_API_KEY",
                    "AKIAIOSFODNN7EXAMPLE", "-----BEGIN PUBLIC KEY-----", "postgres://user:password@localhost/db",
                    "mysql://root:root@localhost:3306/app", "4111 1111 1111 1111", "123-45-6789",
                    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----", "Bearer <token>"],
    "network": ["8.8.8.8", "192.0.2.1", "10.0.0.0/8", "255.255.255.0", "::1", "2001:db8::1", "0.0.0.0"],
    "coordinates": ["40.7128, -74.0060", "lat 51.5074 lon -0.1278"],
    "math": ["(2019) 123-145", "3 + 4 = 7", "10 20 30 40 50 60", "f(x) = 3x^2 + 2x + 1", "1 000 000", "1e+10",
             "p < 0.001", "[1, 2, 3, 4, 5, 6, 7, 8]", "+/- 0.05"],
    "identifier": ["ORCID 0000-0002-1825-0097", "DOI 10.1000/182", "Error 0x80070005", "Room 101", "Call 911",
                   "ISBN 0-19-852663-6", "DE00 0000 0000 0000 0000 00", "arXiv:2303.08774", "RFC 5737"],
    "local_address": ["user@localhost", "admin@company.local", "ssh -p 2222 deploy@host", "192.168.1.0/24",
                      "MAC 00:1A:2B:3C:4D:5E", "(555) 555-5555", "tel: (555) 010-0000", "1-800-273-8255"],
    "regex_and_code": [r"phone_regex = r'\d{3}-\d{3}-\d{4}'", r"r'^[\w.+-]+@[\w-]+\.[\w.]+$'", "$1,234,567",
                       "sha1 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "2023-10-05 14:30:00.123456"],
}  # fmt: skip


def plant(messages: list[dict], sentence: str, where: str, rng: random.Random) -> tuple[list[dict], int, int]:
    """Put `sentence` into the user (`prompt`) or assistant (`answer`) turn; returns messages, turn, offset."""
    roles = [i for i, m in enumerate(messages) if m["role"] == ("user" if where == "prompt" else "assistant")]
    turn = roles[-1]
    text = messages[turn]["content"]
    cut = rng.choice([0, len(text)] + [i + 1 for i, c in enumerate(text) if c == "\n"][:20])
    left, right = text[:cut], text[cut:]
    pad_l = "" if not left or left.endswith("\n") else ("\n" if "\n" in sentence else " ")
    pad_r = "" if not right or right.startswith("\n") else ("\n" if "\n" in sentence else " ")
    new = f"{left}{pad_l}{sentence}{pad_r}{right}"
    out = [dict(m) for m in messages]
    out[turn]["content"] = new
    return out, turn, len(left) + len(pad_l)


def looks_like_code(messages: list[dict]) -> bool:
    answer = messages[-1]["content"]
    return "```" in answer or any(s in answer for s in ("def ", "return ", "{\n", ";\n", "import "))


# ---- measurements ----------------------------------------------------------------------------------------------


def overlaps(a: int, b: int, c: int, d: int) -> bool:
    return a < d and c < b


def eval_labelled(scrubber: PiiScrubber, data_dir: Path, verbose: bool) -> dict:
    gold_n, hit, pred_n, pred_ok = Counter(), Counter(), Counter(), Counter()
    misses, wrong = defaultdict(list), defaultdict(list)
    for rel in LABELLED:
        for rec in read_json(data_dir / rel):
            text = rec["full_text"]
            gold = [
                (GOLD_KIND[s["entity_type"]], s["start_position"], s["end_position"])
                for s in rec["spans"]
                if s["entity_type"] in GOLD_KIND
            ]
            found = scrubber.find(text)
            for kind, a, b in gold:
                gold_n[kind] += 1
                if any(f.kind == kind and overlaps(f.start, f.end, a, b) for f in found):
                    hit[kind] += 1
                else:
                    misses[kind].append(text[a:b])
            for f in found:
                pred_n[f.kind] += 1
                if any(k == f.kind and overlaps(f.start, f.end, a, b) for k, a, b in gold):
                    pred_ok[f.kind] += 1
                else:
                    wrong[f.kind].append(text[max(0, f.start - 20) : f.end + 10])
    if verbose:
        print("labelled misses:", dict(misses), "\nlabelled wrong:", dict(wrong), file=sys.stderr)
    kinds = sorted(set(gold_n) | set(pred_n))
    return {
        "recall_all": round(sum(hit.values()) / max(1, sum(gold_n.values())), 4),
        "precision_all": round(sum(pred_ok.values()) / max(1, sum(pred_n.values())), 4),
        "by_kind": {
            k: {
                "gold": gold_n[k],
                "recall": round(hit[k] / gold_n[k], 4) if gold_n[k] else None,
                "found": pred_n[k],
                "precision": round(pred_ok[k] / pred_n[k], 4) if pred_n[k] else None,
            }
            for k in kinds
        },
    }


def eval_planted(scrubber: PiiScrubber, records: list[list[dict]], rng: random.Random, verbose: bool) -> dict:
    n, hit, pred_n, pred_ok = Counter(), Counter(), Counter(), Counter()
    misses, wrong = defaultdict(list), defaultdict(list)
    kinds = list(GENERATORS)
    for i, messages in enumerate(records):
        pk = kinds[i % len(kinds)]
        value = GENERATORS[pk](rng)
        template = rng.choice((CODE if looks_like_code(messages) and rng.random() < 0.6 else PROSE)[pk])
        sentence = template.format(v=value)
        planted, turn, offset = plant(messages, sentence, rng.choice(["prompt", "answer"]), rng)
        # in a URL the user info is the secret: scheme://user:password@host
        secret = value.split("://", 1)[1].rsplit("@", 1)[0] if pk == "url_password" else value
        a = offset + sentence.index(secret)
        b = a + len(secret)
        kind = PLANT_KIND[pk]
        n[pk] += 1
        for j, m in enumerate(planted):
            for f in scrubber.find(m["content"]):
                pred_n[f.kind] += 1
                if j == turn and f.kind == kind and overlaps(f.start, f.end, a, b):
                    pred_ok[f.kind] += 1
                    if f.start <= a and b <= f.end:
                        hit[pk] += 1
                    else:
                        misses[pk].append((value, m["content"][f.start : f.end]))
                else:
                    wrong[f.kind].append(m["content"][max(0, f.start - 30) : f.end + 10])
    if verbose:
        print("planted counts:", dict(n), "hits:", dict(hit), file=sys.stderr)
        print("planted partial:", dict(misses), "\nplanted wrong:", dict(wrong), file=sys.stderr)
    return {
        "recall_all": round(sum(hit.values()) / max(1, sum(n.values())), 4),
        "recall": {k: round(hit[k] / n[k], 4) for k in kinds if n[k]},
        "planted": dict(n),
        "precision": {k: round(pred_ok[k] / pred_n[k], 4) for k in sorted(pred_n)},
    }


def eval_lookalikes(
    scrubber: PiiScrubber, records: list[list[dict]], rng: random.Random, verbose: bool
) -> dict:
    total, kept = Counter(), Counter()
    lost = []
    items = [(cat, s) for cat, strings in LOOKALIKES.items() for s in strings]
    for i, messages in enumerate(records):
        cat, s = items[i % len(items)]
        sentence = rng.choice(["{v}", "See {v} for details.", "The value is {v}.", 'x = "{v}"']).format(v=s)
        planted, turn, _ = plant(messages, sentence, rng.choice(["prompt", "answer"]), rng)
        out = scrubber.scrub_messages(planted).messages
        total[cat] += 1
        if s in out[turn]["content"]:
            kept[cat] += 1
        else:
            lost.append(s)
    if verbose:
        print("look-alikes changed:", Counter(lost).most_common(), file=sys.stderr)
    return {
        "survival": round(sum(kept.values()) / sum(total.values()), 4),
        "n": sum(total.values()),
        "by_category": {c: round(kept[c] / total[c], 3) for c in LOOKALIKES},
        "changed": sorted(set(lost)),
    }


def eval_plain(scrubber: PiiScrubber, data_dir: Path, verbose: bool) -> dict:
    out, kinds_all, examples = {}, Counter(), []
    total = changed_all = 0
    for name in SFT:
        records = sft_records(data_dir, name)
        changed = 0
        for messages in records:
            res = scrubber.scrub_messages(messages)
            if res.found:
                changed += 1
                kinds_all.update(res.found)
                if verbose:
                    for m in messages:
                        for f in scrubber.find(m["content"]):
                            examples.append(
                                (name, f.kind, f.recognizer, m["content"][max(0, f.start - 40) : f.end + 15])
                            )
        out[name] = {"records": len(records), "changed": changed, "share": round(changed / len(records), 4)}
        total += len(records)
        changed_all += changed
    if verbose:
        for e in examples:
            print("plain:", e, file=sys.stderr)
    return {
        "share_all": round(changed_all / total, 4),
        "records": total,
        "by_set": out,
        "by_kind": dict(kinds_all),
    }


def eval_speed(data_dir: Path, no_prescreen_sample: int = 1500) -> dict:
    records = sft_records(data_dir, "alpaca") + sft_records(data_dir, "codealpaca")
    res: dict = {"records": len(records)}
    outputs = {}
    for name, prescreen, sample in (
        ("prescreen", True, records),
        ("no_prescreen", False, records[::5][:no_prescreen_sample]),
    ):
        scrubber = PiiScrubber(PiiConfig(prescreen=prescreen))
        scrubber.scrub_messages([{"role": "user", "content": "warm up: mail jane.doe@gmail.com"}])
        scrubber.counters()
        t = time.perf_counter()
        outputs[name] = [scrubber.scrub_messages(messages) for messages in sample]
        dt = time.perf_counter() - t
        c = scrubber.counters()
        res[name] = {
            "records": len(sample),
            "records_per_s": round(len(sample) / dt),
            "presidio_call_share": round(c["presidio_calls"] / max(1, c["texts_scanned"]), 4),
        }
    res["speedup"] = round(res["prescreen"]["records_per_s"] / res["no_prescreen"]["records_per_s"], 1)
    # the pre-screen must not change a single output: compare on the records both runs saw
    with_prescreen = outputs["prescreen"][::5][:no_prescreen_sample]
    res["prescreen_same_output"] = all(
        (a.messages, a.found, a.reject) == (b.messages, b.found, b.reject)
        for a, b in zip(with_prescreen, outputs["no_prescreen"], strict=True)
    )
    return res


def eval_presidio_defaults(data_dir: Path, n: int = 1000) -> dict:
    """The baseline: presidio's predefined recognizers (no NER: blank pipeline) on plain Alpaca and CodeAlpaca
    records; share of records where it finds anything, by entity type, and records/s."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    from stages.clean.pii import _offline_tldextract

    _offline_tldextract()  # its e-mail check would fetch the suffix list
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.nlp = {"en": spacy.blank("en")}
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    registry.recognizers = [r for r in registry.recognizers if r.__class__.__name__ != "SpacyRecognizer"]
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    out = {}
    for name in ("alpaca", "codealpaca"):
        records = sft_records(data_dir, name)[:n]
        changed, kinds = 0, Counter()
        t = time.perf_counter()
        for messages in records:
            found = [
                r.entity_type for m in messages for r in analyzer.analyze(text=m["content"], language="en")
            ]
            changed += bool(found)
            kinds.update(found)
        out[name] = {
            "records": len(records),
            "records_per_s": round(len(records) / (time.perf_counter() - t)),
            "changed_share": round(changed / len(records), 4),
            "by_entity": dict(kinds.most_common(6)),
        }
    return out


def evaluate(data_dir: Path, seed: int = 0, verbose: bool = False, baseline: bool = True) -> dict:
    data_dir = Path(data_dir)
    scrubber = PiiScrubber(PiiConfig())
    rng = random.Random(seed)
    base = sft_records(data_dir, "alpaca") + sft_records(data_dir, "codealpaca")
    rng.shuffle(base)
    t = time.perf_counter()
    out = {
        "bench": "pii_eval",
        "threshold": scrubber.cfg.score_threshold,
        "labelled": eval_labelled(scrubber, data_dir, verbose),
        "planted": eval_planted(scrubber, base[:3000], rng, verbose),
        "lookalikes": eval_lookalikes(scrubber, base[3000:6000], rng, verbose),
        "plain_changed": eval_plain(scrubber, data_dir, verbose),
    }
    out["speed"] = eval_speed(data_dir)
    if baseline:
        out["presidio_defaults"] = eval_presidio_defaults(data_dir)
    out["eval_s"] = round(time.perf_counter() - t, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--verbose", action="store_true", help="misses, false positives and changes on stderr"
    )
    args = parser.parse_args()
    print(json.dumps(evaluate(args.data, args.seed, args.verbose)))


if __name__ == "__main__":
    main()
