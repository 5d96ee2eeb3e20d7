"""Every metric in ``bot.metrics`` is named for verifybot, labelled with low cardinality only,
and documented in the README's "Operating verifybot" table."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Histogram

from bot import metrics

ROOT = Path(__file__).resolve().parents[2]
#: What a label must never carry: one series per member, number or request.
FORBIDDEN_LABELS = {"user", "user_id", "member", "phone", "number", "request_id", "chat_id"}


def defined() -> list[Counter | Histogram]:
    found = [getattr(metrics, name) for name in dir(metrics)]
    return [metric for metric in found if isinstance(metric, Counter | Histogram)]


def exported_name(metric: Counter | Histogram) -> str:
    name: str = metric._name
    return name + ("_total" if isinstance(metric, Counter) else "")


def test_every_metric_is_prefixed_and_has_only_low_cardinality_labels() -> None:
    assert len(defined()) >= 20
    for metric in defined():
        assert metric._name.startswith("verifybot_"), metric._name
        assert not FORBIDDEN_LABELS & set(metric._labelnames), metric._name


def test_every_metric_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Operating verifybot", 1)[1].split("\n## ", 1)[0]
    missing = [
        exported_name(metric)
        for metric in defined()
        if f"`{exported_name(metric).removeprefix('verifybot_')}`" not in section
    ]
    assert missing == []
