"""PII scrubbing: every entity kind found and redacted, its look-alikes untouched; allow-list; redact vs reject;
the pre-screen changes nothing; no network; the "no NER" note; a spaCy NER model when one is given."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from pydantic import ValidationError

from stages.clean import pii
from stages.clean import pii_recognizers as R
from stages.clean.pii import PiiConfig, PiiScrubber


def luhn_number(prefix: str, length: int) -> str:
    body = (prefix + "7394015826" * 2)[: length - 1]
    return next(body + d for d in "0123456789" if R.luhn_ok(body + d))


CARD = luhn_number("453914", 16)
AMEX = luhn_number("3787", 15)
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MjQyNDIiLCJpYXQiOjE3MDAwMDAwMDB9."
    "q8Xv2LmN4pRt7YbW1cZ9eKfH3jA6sD0gU5iO8yTqEw4"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aumg5T1Mx2k9aPq8G5zT9XfQ2c\n"
    "Lq0vY7mB3nK8wR2sT5uV9xZ1aC4dF6gH8jK0lN3pQ5rS7tU9vW1xY3zA5bC7dE9f\n"
    "-----END RSA PRIVATE KEY-----"
)

# kind -> (text, value that must disappear)
FOUND = [
    ("email", "Write to jane.doe.private@gmail.com today.", "jane.doe.private@gmail.com"),
    ("email", "mailto:Omar_Haddad42@uni-heidelberg.de", "Omar_Haddad42@uni-heidelberg.de"),
    ("phone", "Call me at +1 415-555-0199 if anything changes.", "+1 415-555-0199"),
    ("phone", "Office: (415) 867-5309", "(415) 867-5309"),
    ("phone", "Our London desk is +44 20 7946 0958.", "+44 20 7946 0958"),
    ("phone", "Ring 020 7946 0958 after six.", "020 7946 0958"),
    ("phone", "Phone:\n467 3395\n\nE-mail: none", "467 3395"),
    ("phone", "Fax: 9498777106", "9498777106"),
    ("phone", "Bel me op 06.12.34.56.78 alstublieft.", "06.12.34.56.78"),
    ("ip_address", "Block 81.2.69.160 in the firewall.", "81.2.69.160"),
    ("ip_address", 'HOST = "2a02:6b8::2:242"', "2a02:6b8::2:242"),
    ("ip_address", "ssh root@84.17.46.3 -p 22", "84.17.46.3"),
    ("credit_card", f"Charge my card {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]}.", CARD[12:]),
    ("credit_card", f"amex {AMEX}", AMEX),
    ("iban", "Please pay to GB82 WEST 1234 5698 7654 32, thanks.", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "iban = 'DE89370400440532013000'", "DE89370400440532013000"),
    ("us_ssn", "My SSN is 536-22-8817.", "536-22-8817"),
    ("us_ssn", "social security number: 536228817", "536228817"),
    ("secret", f"export GITHUB_TOKEN={GHP}", GHP),
    ("secret", "token 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", "u8jzPde0Igx"),
    ("secret", "aws_access_key_id = AKIAZ4X7Q2M9T3B8K1P5", "AKIAZ4X7Q2M9T3B8K1P5"),
    ("secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY9q2W8z4T1v", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY9q2W8z4T1v"),
    ("secret", "SLACK=xoxb-2817364950-5029384756-tpYlSXpfKtHF4vUCsMehGAkW", "tpYlSXpfKtHF"),
    ("secret", "stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("secret", "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
    ("secret", "key=AIzaSyB1c2D3e4F5g6H7i8J9k0L1m2N3o4P5q6R", "AIzaSyB1c2D3e4F5g6H7i8J9k0L1m2N3o4P5q6R"),
    ("secret", "login(token='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')", "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"),
    ("secret", f"Authorization: Bearer {JWT}", JWT),
    ("secret", f'KEY = """{PRIVATE_KEY}"""', "MIIEowIBAAKCAQEA1c7"),
    ("secret", "engine = create_engine('postgres://admin:S3cr3tPa55@db.internal:5432/app')", "S3cr3tPa55"),
]  # fmt: skip

# kind -> text that must come out unchanged (each looks like that kind)
LOOKALIKES = [
    ("email", "@app.route('/users')\ndef users(): return x@self.weight + A@B.T"),
    ("email", "Send it to user@example.com or you@gmail.com."),
    ("email", "git clone git@github.com:org/repo.git && npm i lodash@4.17.21"),
    ("phone", "ISBN 978-3-16-148410-0, order no. 555-123-4567, call 911"),
    ("phone", "The call returned 2023-04-15 10:30:00 and 1697371200."),
    ("phone", "Call it with 10 20 30 40 50 60; the campaign reached 1 000 000 users."),
    ("phone", "Toll free: 1-800-273-8255. Fictional: (555) 123-4567. Example: 123-456-7890."),
    ("phone", "Nature 12 (2019) 123-145; coordinates 40.7128, -74.0060; x = 555-1234"),
    ("ip_address", "pip install requests==2.31.0.1 and pip install x==1.2.3.4"),
    ("ip_address", "Listen on 127.0.0.1:8080, 0.0.0.0:8000 or [::1]:5000; see 192.0.2.1 and 2001:db8::1."),
    ("ip_address", "route 10.0.0.0/8, netmask 255.255.255.0, see section 4.2.1.3, version 10.2.14.3"),
    ("ip_address", "std::vector<int> v; a[1::2]; at 12:30:45; MAC 00:1A:2B:3C:4D:5E"),
    ("credit_card", "Test with 4111 1111 1111 1111 or 4242424242424242; ts=1697371200123"),
    ("credit_card", f"Not Luhn: {CARD[:-1]}{(int(CARD[-1]) + 1) % 10}; 2^64 = 18446744073709551616"),
    ("iban", "GB82 WEST 1234 5698 7654 33 has a bad checksum; FY2023 Q1; mp3 ab12 cdef"),
    (
        "us_ssn",
        "666-12-3456 and 900-12-3456 are never issued; 123-45-6789 is the textbook one; ZIP 12345-6789",
    ),
    ("us_ssn", "Suite 680 36 4022 Oakridge Rd"),
    ("secret", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx and sk-your-api-key-here and AKIAIOSFODNN7EXAMPLE"),
    (
        "secret",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    ),
    ("secret", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----"),
    ("secret", "postgres://user:password@localhost/db, mysql://root:root@localhost:3306/app, ${DB_URL}"),
    ("secret", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8, uuid 550e8400-e29b-41d4-a716-446655440000"),
    (
        "secret",
        "md5 d41d8cd98f00b204e9800998ecf8427e, base64 aGVsbG8gd29ybGQ=, color: #ff5733; np.array([1, 2])",
    ),
]


@pytest.fixture(scope="module")
def scrubber() -> PiiScrubber:
    return PiiScrubber(PiiConfig())


def chat(*contents: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(contents)
    return [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]


# ---- every kind: found, and look-alikes untouched --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "value"), FOUND, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(FOUND)]
)
def test_found_and_redacted(scrubber, kind, text, value):
    out, found = scrubber.scrub_text(text)
    assert found == {kind: 1}, (out, found)
    assert value not in out
    assert pii.PLACEHOLDERS[kind] in out
    assert scrubber.scrub_text(out) == (out, {})  # a placeholder is never PII itself


@pytest.mark.parametrize(
    ("kind", "text"), LOOKALIKES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(LOOKALIKES)]
)
def test_lookalike_untouched(scrubber, kind, text):
    assert scrubber.scrub_text(text) == (text, {})


def test_whole_token_is_redacted_not_its_prefix(scrubber):
    out, _ = scrubber.scrub_text(f"token {GHP} end")
    assert out == "token <SECRET> end"
    out, _ = scrubber.scrub_text(f"before\n{PRIVATE_KEY}\nafter")
    assert out == "before\n<SECRET>\nafter"
    out, _ = scrubber.scrub_text("DATABASE_URL=postgres://admin:S3cr3tPa55@db.internal:5432/app")
    assert out == "DATABASE_URL=postgres://<SECRET>@db.internal:5432/app"  # not also an e-mail inside


def test_unterminated_private_key_is_redacted(scrubber):
    head = PRIVATE_KEY.rsplit("\n", 1)[0]
    out, found = scrubber.scrub_text(f"key:\n{head}")
    assert found == {"secret": 1} and "MIIEow" not in out


# ---- allow-list ------------------------------------------------------------------------------------------------


def test_default_allow_list_keeps_placeholders(scrubber):
    text = (
        "user@example.com, admin@mail.example.org, test@gmail.com, 127.0.0.1, 8.8.8.8, 198.51.100.7, "
        "4111-1111-1111-1111, 123-45-6789, 123.456.7890"
    )
    assert scrubber.scrub_text(text) == (text, {})


def test_custom_allow_list():
    cfg = PiiConfig(
        allow_list=["*@acme.io", "jane@*", "10.0.0.0/8", "+1 415 555 0199", "AKIAZ4X7Q2M9T3B8K1P5"]
    )
    s = PiiScrubber(cfg)
    text = (
        "bob@acme.io bob@dev.acme.io jane@gmail.com 10.1.2.3 (415) 555-0199 AKIAZ4X7Q2M9T3B8K1P5 "
        "mark@gmail.com 11.1.2.3"
    )
    out, found = s.scrub_text(text)
    assert found == {"email": 1, "ip_address": 1}
    assert out.endswith("<EMAIL> <IP_ADDRESS>") and out.startswith(
        "bob@acme.io bob@dev.acme.io jane@gmail.com 10.1.2.3"
    )
    # an empty allow-list redacts the placeholders too
    out, found = PiiScrubber(PiiConfig(allow_list=[])).scrub_text("user@example.com 127.0.0.1")
    assert out == "<EMAIL> <IP_ADDRESS>"


# ---- messages, redact vs reject --------------------------------------------------------------------------------


def test_nothing_found_returns_the_same_list(scrubber):
    messages = chat("What is 2 + 2?", "4")
    res = scrubber.scrub_messages(messages)
    assert res.messages is messages and res.found == {} and res.reject is None


def test_redact_copies_and_counts(scrubber):
    messages = chat("Mail jane.doe.private@gmail.com and bob.smith@outlook.com", f"Token: {GHP}")
    before = json.dumps(messages)
    res = scrubber.scrub_messages(messages)
    assert json.dumps(messages) == before  # input not mutated
    assert res.messages == chat("Mail <EMAIL> and <EMAIL>", "Token: <SECRET>")
    assert res.found == {"email": 2, "secret": 1}
    assert res.reject is None


def test_reject_reason_and_evidence_without_raw_value():
    s = PiiScrubber(PiiConfig(actions={"secret": "reject"}))
    res = s.scrub_messages(chat("Deploy it please.", f"Use GITHUB_TOKEN={GHP} then run."))
    assert res.messages[1]["content"] == "Use GITHUB_TOKEN=<SECRET> then run."  # stored redacted
    reason, detail = res.reject
    assert reason == "pii_secret"
    assert detail["entity"] == "secret" and detail["turn"] == 1 and detail["role"] == "assistant"
    assert detail["recognizer"] == "github_token" and detail["score"] == 1.0
    assert (detail["start"], detail["end"]) == (17, 17 + len(GHP))
    assert detail["masked"] == "ghp_****…(40 chars)"
    assert detail["found"] == {"secret": 1}
    dumped = json.dumps(detail, ensure_ascii=False)
    assert GHP not in dumped and GHP[:12] not in dumped


def test_reject_only_for_kinds_set_to_reject():
    s = PiiScrubber(PiiConfig(actions={"US_SSN": "reject"}))  # presidio's name works too
    assert s.scrub_messages(chat("mail jane.doe.private@gmail.com", "ok")).reject is None
    reason, detail = s.scrub_messages(chat("My SSN is 536-22-8817.", "Noted.")).reject
    assert reason == "pii_us_ssn" and detail["masked"] == "***-**-**** (11 chars)"
    assert "value" not in detail and "536-22-8817" not in json.dumps(detail)


def test_keep_raw_in_rejects_keeps_the_value_in_detail():
    s = PiiScrubber(PiiConfig(actions={"email": "reject"}, keep_raw_in_rejects=True))
    res = s.scrub_messages(chat("Write to jane.doe.private@gmail.com", "Done."))
    assert res.reject[0] == "pii_email"
    assert res.reject[1]["value"] == "jane.doe.private@gmail.com"
    assert "jane.doe" not in res.messages[0]["content"]  # the record itself is still redacted


def test_config_validation_and_round_trip():
    with pytest.raises(ValidationError):
        PiiConfig(actions={"passport": "reject"})
    with pytest.raises(ValidationError):
        PiiConfig(actions={"email": "drop"})
    with pytest.raises(ValidationError):
        PiiConfig.model_validate({"enabled": True, "treshold": 0.4})
    cfg = PiiConfig(actions={"EMAIL_ADDRESS": "reject", "phone_number": "reject"})
    assert cfg.actions["email"] == cfg.actions["phone"] == "reject" and cfg.actions["iban"] == "redact"
    assert set(cfg.actions) == set(R.ALL_KINDS)
    assert PiiConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert all(f.description for f in PiiConfig.model_fields.values())


def test_counters_are_per_call(scrubber):
    scrubber.counters()
    scrubber.scrub_messages(chat("hello there", "mail jane.doe.private@gmail.com"))
    assert scrubber.counters() == {"texts_scanned": 2, "presidio_calls": 1}
    assert scrubber.counters() == {"texts_scanned": 0, "presidio_calls": 0}


def test_threshold_is_a_recall_knob():
    text = "The codes were 467 3395 and 12 34 56."  # grouped digits with no phone word: score 0.3
    assert PiiScrubber(PiiConfig()).scrub_text(text)[1] == {}
    assert PiiScrubber(PiiConfig(score_threshold=0.3)).scrub_text(text)[1] == {"phone": 2}


# ---- the pre-screen changes nothing ----------------------------------------------------------------------------

SAMPLE = (
    [text for _, text, _ in FOUND]
    + [text for _, text in LOOKALIKES]
    + [
        "Explain in two sentences why the number 7 is interesting to mathematicians.",
        "def add(a, b):\n    return a + b  # TODO: call 555 0199 later\n",
        "The meeting is at 10:30 on 2023-04-15 in room 4.12; bring 3 copies.",
        "Contact support (phone 0800 123 4567, email help@acme-corp.io) or visit 10.20.30.40.",
        "SELECT * FROM users WHERE id = 12345678 AND created > '2021-01-01';",
        "Her number is 617 555 0143 and her SSN 078-05-1120 (an example).",
        "Price: $1,234,567.89 for 100 000 units; call 1 000 000 times; text me on 07700 900123",
        "Keys: sk-ant-api03-vj7FAc9QeWJKY40uvSwMFLZDe1f8rESQed and xoxp-12345-67890-UStPKR0CsTy4Qwb8DwkNhFdn",
        "IPv6 fe80::1ff:fe23:4567:890a%eth0, ::ffff:192.0.2.1, 2001:0db8:0000:0000:0000:ff00:0042:8329",
        "",
    ]
)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0])
def test_prescreen_off_gives_the_same_output(threshold):
    on = PiiScrubber(PiiConfig(score_threshold=threshold))
    off = PiiScrubber(PiiConfig(score_threshold=threshold, prescreen=False))
    for text in SAMPLE:
        assert on.find(text) == off.find(text), text
    joined = "\n".join(SAMPLE)  # one long mixed text too
    assert on.find(joined) == off.find(joined)
    assert on.counters()["presidio_calls"] < off.counters()["presidio_calls"]


def test_prescreen_passes_plain_text_by(scrubber):
    scrubber.counters()
    for text in ["Write a haiku about autumn leaves.", "for i in range(10):\n    print(i * 2)", "1 + 1 = 2"]:
        scrubber.scrub_text(text)
    assert scrubber.counters()["presidio_calls"] == 0


# ---- no network ------------------------------------------------------------------------------------------------


def test_no_network_while_scrubbing(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)  # recorded: tldextract swallows errors and falls back to its snapshot
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # rebuild everything that could fetch: presidio's engine, our suffix-list extractor, and tldextract's
    # module-level extractor as it is when tldextract was imported before our module (with the PSL URLs)
    import tldextract.tldextract as tx

    monkeypatch.setattr(
        tx, "TLD_EXTRACTOR", tx.TLDExtract(cache_dir=None, suffix_list_urls=tx.PUBLIC_SUFFIX_LIST_URLS)
    )
    pii._analyzer.cache_clear()
    R._tld_extractor.cache_clear()
    R.is_public_suffix_domain.cache_clear()
    s = PiiScrubber(PiiConfig())
    text = (
        "Mail ana.lopez@company.co.uk or li.wang@startup.ai, see https://docs.python.org/3/ and "
        "http://admin:Xk9vQ2pLm4@intranet.corp.net/wiki, ftp://files.acme-corp.io/pub"
    )
    out, found = s.scrub_text(text)
    assert found == {"email": 2, "secret": 1}
    assert "https://docs.python.org/3/" in out
    tx.extract("someone.co.uk")  # what presidio's own e-mail recognizer calls
    assert attempts == []
    pii._analyzer.cache_clear()


# ---- NER -------------------------------------------------------------------------------------------------------


def test_no_ner_note_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(pii, "_NOTED_NO_NER", False)
    with caplog.at_level(logging.INFO, logger="factory"):
        for _ in range(3):
            PiiScrubber(PiiConfig()).scrub_text("mail jane.doe.private@gmail.com")
    notes = [r for r in caplog.records if r.name == "factory" and "no spaCy NER model" in r.getMessage()]
    assert len(notes) == 1


def test_spacy_model_finds_person_and_location(tmp_path, monkeypatch, caplog):
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": "Jane Doe"},
            {"label": "GPE", "pattern": "Paris"},
            {"label": "ORG", "pattern": "Acme"},
        ]
    )
    nlp.to_disk(tmp_path / "ner")
    monkeypatch.setattr(pii, "_NOTED_NO_NER", False)
    with caplog.at_level(logging.INFO, logger="factory"):
        s = PiiScrubber(PiiConfig(spacy_model=str(tmp_path / "ner"), actions={"person": "reject"}))
    assert not any("no spaCy NER model" in r.getMessage() for r in caplog.records)
    res = s.scrub_messages(chat("Jane Doe from Acme moved to Paris; mail jane.doe.private@gmail.com", "ok"))
    assert res.messages[0]["content"] == "<PERSON> from Acme moved to <LOCATION>; mail <EMAIL>"
    assert res.found == {"person": 1, "location": 1, "email": 1}
    assert res.reject[0] == "pii_person"
    assert s.counters() == {"texts_scanned": 2, "presidio_calls": 2}  # no pre-screen with NER


def test_missing_spacy_model_is_a_config_error_not_a_download(monkeypatch):
    import spacy.cli

    monkeypatch.setattr(spacy.cli, "download", lambda *a, **k: pytest.fail("tried to download a model"))
    with pytest.raises(ValidationError, match="not installed"):
        PiiConfig(spacy_model="xx_no_such_model_sm")
