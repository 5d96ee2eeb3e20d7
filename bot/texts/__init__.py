"""The catalogue of every sentence a member sees, keyed and translatable.

Languages are TOML files beside this module (``en.toml`` is the reference); an operator
may add or override languages with ``TEXTS_DIR``. Lookups fall back from ``pt-br`` to
``pt`` to the default language, key by key, so a partial translation still works.

A platform may word a text its own way: ``[telegram.code] warning`` replaces ``code.warning``
for Telegram. Adapters pass ``variant="telegram"``; the fallback order is variant then plain
key, in each language in turn.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.flow import Action, Date, Duration, Param, Reply

_HERE = Path(__file__).parent
REFERENCE = "en"


class CatalogueError(ValueError):
    """A catalogue file is missing, unreadable or inconsistent."""


def _flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, key + "."))
        elif isinstance(value, str):
            flat[key] = value
    return flat


def _load_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            return _flatten(tomllib.load(handle))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"cannot read texts file {path}: {exc}") from exc


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@dataclass(frozen=True)
class Catalogue:
    languages: Mapping[str, Mapping[str, str]]
    default: str = REFERENCE

    @classmethod
    def load(cls, extra_dir: Path | None = None, default: str = REFERENCE) -> Catalogue:
        languages: dict[str, dict[str, str]] = {}
        folders = [_HERE] + ([extra_dir] if extra_dir else [])
        for folder in folders:
            if not folder.is_dir():
                raise CatalogueError(f"TEXTS_DIR {folder} is not a folder")
            for path in sorted(folder.glob("*.toml")):
                languages.setdefault(path.stem.lower(), {}).update(_load_file(path))
        if default.lower() not in languages:
            have = ", ".join(sorted(languages))
            raise CatalogueError(f"DEFAULT_LANGUAGE {default!r} has no texts file (have: {have})")
        return cls(languages, default.lower())

    def language_for(self, locale: str | None, fallback: str | None = None) -> str:
        """The best language we have for a platform locale such as ``pt-BR`` or ``es_419``;
        failing that, for ``fallback`` (a community's default language), then ours."""
        for wanted in (locale, fallback):
            if wanted:
                tag = wanted.replace("_", "-").lower()
                for candidate in (tag, tag.split("-")[0]):
                    if candidate in self.languages:
                        return candidate
        return self.default

    def text(
        self, key: str, locale: str | None = None, *, variant: str | None = None, **params: Param
    ) -> str:
        language = self.language_for(locale)
        keys = (f"{variant}.{key}", key) if variant else (key,)
        for lang in dict.fromkeys((language, language.split("-")[0], self.default, REFERENCE)):
            texts = self.languages.get(lang, {})
            for candidate in keys:
                template = texts.get(candidate)
                if template is not None:
                    values = {name: self._value(value, lang) for name, value in params.items()}
                    return template.format(**values)
        raise KeyError(f"no text for {key!r}")

    def render(self, reply: Reply, locale: str | None = None, *, variant: str | None = None) -> str:
        text = self.text(reply.key, locale, variant=variant, **reply.params)
        if reply.about_code:
            text += "\n" + self.text("code.warning", locale, variant=variant)
        return text

    def action_label(
        self, action: Action, locale: str | None = None, *, variant: str | None = None
    ) -> str:
        return self.text(f"action.{action.value}", locale, variant=variant)

    def _value(self, value: Param, lang: str) -> str:
        if isinstance(value, Duration):
            return self.duration(value.seconds, lang)
        if isinstance(value, Date):
            return self.date(value.timestamp, lang)
        return str(value)

    def duration(self, seconds: int, locale: str | None = None) -> str:
        for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if seconds >= size * (2 if unit != "minutes" else 1):
                return self.text(f"duration.{unit}", locale, n=-(-seconds // size))
        return self.text("duration.seconds", locale, n=max(seconds, 0))

    def date(self, timestamp: float, locale: str | None = None) -> str:
        day = datetime.fromtimestamp(timestamp, UTC)
        return self.text(
            "date.day",
            locale,
            year=f"{day.year:04d}",
            month=f"{day.month:02d}",
            day=f"{day.day:02d}",
        )
