"""The secret mask (pipelines/base/secrets.py) and how logged configs carry secrets: masked, and restored from the
environment when a champion loads."""

from __future__ import annotations

import pytest

from ragsweep.pipelines.base.secrets import MASK, SecretMask
from ragsweep.search.config import ModelEndpoint, loggable
from ragsweep.search.promotion.champion import unmasked_env


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("postgresql://bob:pa55w0rd@db:5432/mlflow", "pa55w0rd", "postgresql://bob:***@db"),
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678", "Bearer ***"),
        ('{"api_key": "zzz-very-secret"}', "zzz-very-secret", '"api_key": "***"'),
        ("password=hunter22 next", "hunter22", "password=*** next"),
        ("key sk-proj-abcdefghijklmnop0123 end", "sk-proj-abcdefghijklmnop0123", "key *** end"),
        ("hf_abcdefghijklmnopqrstuvwxyz1234", "hf_abcdefghijklmnopqrstuvwxyz1234", ""),
        ("AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", ""),
    ],
)
def test_common_secret_shapes_are_masked(text: str, hidden: str, kept: str) -> None:
    out = SecretMask().mask(text)
    assert hidden not in out and kept in out


def test_registered_values_are_masked_and_ordinary_text_is_not() -> None:
    mask = SecretMask()
    mask.add("my-token-value", "ab", None)  # too short to mask safely: "ab" stays
    assert mask.mask("use my-token-value and ab") == f"use {MASK} and ab"
    assert mask.mask("max_tokens: 32, token_f1: 0.5, top_k: 3") == "max_tokens: 32, token_f1: 0.5, top_k: 3"
    assert mask.deep({"a": ["x my-token-value"], "n": 3}) == {"a": [f"x {MASK}"], "n": 3}


def test_logged_endpoint_hides_env_values_and_a_champion_takes_them_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ep = ModelEndpoint(env={"HF_TOKEN": "x1", "OMP_NUM_THREADS": "2"})
    logged = loggable(ep)
    assert logged["env"] == {"HF_TOKEN": MASK, "OMP_NUM_THREADS": MASK}
    monkeypatch.setenv("HF_TOKEN", "from-env")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert unmasked_env(logged) == {"HF_TOKEN": "from-env"}
    assert unmasked_env({"env": {"A": "plain"}}) == {"A": "plain"}


def test_an_answers_row_is_masked_in_every_text_field_even_ones_added_later() -> None:
    from ragsweep.search.answering import redacted
    from ragsweep.search.tracking.redact import Redactor

    mail = "ada@example.org"
    row = {
        "id": "q1",
        "question": f"mail {mail}?",
        "answer": mail,
        "gold": [mail],
        "answerable": True,
        "contexts": [{"doc_id": "d1", "start": 0, "end": 5, "score": 0.5, "text": mail}],
        "search_texts": [f"mail {mail}?", f"write to {mail}"],
        "scores": {"token_f1": 1.0},
        "judges": {"correctness": {"reason": mail, "raw": mail, "calls": 1}},
        "a_later_field": {"x": [mail]},
        "latency_s": 0.5,
        "llm_calls": 2,
    }
    from ragsweep.search.config import RedactSettings

    out = redacted(row, Redactor(RedactSettings()))
    assert mail not in str(out)
    assert out["id"] == "q1" and out["contexts"][0]["doc_id"] == "d1" and out["scores"] == {"token_f1": 1.0}
    assert out["llm_calls"] == 2 and out["answerable"] is True
