"""The Telegram Bot API's description (../shared/specs): what a method takes and an object holds,
checked strictly, as the live server would."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.emulators import specs

SPEC_FILE = "telegram-bot-api.json"
_INT = re.compile(r"^[+-]?\d+$")
_DISCRIMINATOR = re.compile(r'(?:always|must be) "?([a-z_]+)"?')


# -- the spec ---------------------------------------------------------------------------------


def find_specs() -> Path:
    """The folder with the official API descriptions (see ``tests.emulators.specs``)."""
    return specs.find_specs(SPEC_FILE)


_spec_guard = threading.Lock()
_spec_cache: dict[Path, TelegramSpec] = {}


def load_spec(path: Path | None = None) -> TelegramSpec:
    """The parsed spec (cached per file); FileNotFoundError, loudly, when it is not there."""
    spec_file = path or find_specs() / SPEC_FILE
    with _spec_guard:
        if spec_file not in _spec_cache:
            if not spec_file.exists():
                raise FileNotFoundError(
                    f"{spec_file} is not here: the Telegram emulator validates every request "
                    "against it (set VERIFYBOT_SPECS to the shared/specs folder)"
                )
            _spec_cache[spec_file] = TelegramSpec(json.loads(spec_file.read_text("utf-8")))
        return _spec_cache[spec_file]


def conforms(type_name: str, value: Any) -> list[str]:
    """What is wrong with ``value`` as a ``type_name`` ("Message", "Array of Update",
    "ChatMember", "Boolean", ...) per the spec: required fields present, no unknown fields,
    JSON types right, recursively. Empty when it conforms."""
    return load_spec().check(type_name, value, type_name)


@dataclass(frozen=True)
class _Upload:
    """A file part of a multipart body."""

    filename: str
    content_type: str
    data: bytes


class TelegramSpec:
    """The spec's methods and types, and the checks built on them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data.get("version", "")
        self.methods: dict[str, dict[str, Any]] = data["methods"]
        self.types: dict[str, dict[str, Any]] = data["types"]
        self._by_lower = {name.lower(): name for name in self.methods}

    def canonical_method(self, name: str) -> str | None:
        return self._by_lower.get(name.lower())

    def fields(self, owner: str) -> dict[str, dict[str, Any]]:
        """A method's parameters or a type's fields, by name."""
        source = self.methods.get(owner) or self.types.get(owner) or {}
        return {f["name"]: f for f in source.get("fields", [])}

    def field_names(self, owner: str) -> list[str]:
        return list(self.fields(owner))

    # -- strict checking (results, and objects inside requests) ---------------------------

    def check(self, type_expr: str, value: Any, path: str) -> list[str]:
        if type_expr.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {type_expr}, got {_kind(value)}"]
            inner = type_expr.removeprefix("Array of ")
            errors: list[str] = []
            for index, item in enumerate(value):
                errors.extend(self.check(inner, item, f"{path}[{index}]"))
            return errors
        if type_expr == "Integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif type_expr == "Float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif type_expr == "Boolean":
            ok = isinstance(value, bool)
        elif type_expr == "True":
            ok = value is True
        elif type_expr == "String":
            ok = isinstance(value, str)
        elif type_expr == "InputFile":
            ok = isinstance(value, _Upload)
        elif type_expr in self.types:
            return self._check_object(type_expr, value, path)
        else:
            return [f"{path}: the spec has no type {type_expr!r}"]
        return [] if ok else [f"{path}: expected {type_expr}, got {_kind(value)}"]

    def check_any(self, types: list[str], value: Any, path: str) -> list[str]:
        best: list[str] | None = None
        for type_expr in types:
            errors = self.check(type_expr, value, path)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        if len(types) > 1 and best and all(e.startswith(f"{path}: expected") for e in best):
            return [f"{path}: expected {' or '.join(types)}, got {_kind(value)}"]
        return best or []

    def _check_object(self, type_name: str, value: Any, path: str) -> list[str]:
        definition = self.types[type_name]
        subtypes: list[str] | None = definition.get("subtypes")
        if subtypes:
            return self._check_union(type_name, subtypes, value, path)
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {_kind(value)}"]
        fields = self.fields(type_name)
        errors = [f"{path}: unknown field {k!r}" for k in value if k not in fields]
        for name, spec_field in fields.items():
            if name not in value:
                if spec_field["required"]:
                    errors.append(f"{path}: missing required field {name!r}")
                continue
            errors.extend(self.check_any(spec_field["types"], value[name], f"{path}.{name}"))
        discriminator = self.discriminator(type_name)
        if discriminator and value.get(discriminator[0]) != discriminator[1]:
            name, expected = discriminator
            errors.append(f"{path}.{name}: must be {expected!r} for {type_name}")
        return errors

    def _check_union(self, name: str, subtypes: list[str], value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected {name} object, got {_kind(value)}"]
        keyed = {st: self.discriminator(st) for st in subtypes}
        for subtype, discriminator in keyed.items():
            if discriminator and value.get(discriminator[0]) == discriminator[1]:
                return self.check(subtype, value, path)
        if all(keyed.values()):
            field_name = next(iter(keyed.values()))
            assert field_name is not None
            allowed = sorted(d[1] for d in keyed.values() if d)
            return [f"{path}.{field_name[0]}: {value.get(field_name[0])!r} is not one of {allowed}"]
        return self.check_any(subtypes, value, path)

    def discriminator(self, type_name: str) -> tuple[str, str] | None:
        """("status", "creator") for ChatMemberOwner: the first field's fixed value."""
        fields = self.types.get(type_name, {}).get("fields") or []
        if not fields or fields[0]["name"] not in {"type", "status", "source"}:
            return None
        match = _DISCRIMINATOR.search(fields[0].get("description", ""))
        return (fields[0]["name"], match.group(1)) if match else None

    # -- request parameters ----------------------------------------------------------------

    def coerce(
        self, types: list[str], raw: Any, name: str, uploads: dict[str, _Upload]
    ) -> tuple[Any, str | None]:
        """A request parameter's value from its wire form; (value, None) or (None, error)."""
        if isinstance(raw, _Upload):
            if "InputFile" in types:
                return raw, None
            return None, f'Bad Request: parameter "{name}" must be {_or(types)}, not a file'
        if isinstance(raw, str):
            return self._coerce_text(types, raw, name, uploads)
        if (
            "String" in types
            and isinstance(raw, int | float)
            and not isinstance(raw, bool)
            and "Integer" not in types
        ):
            return str(raw), None
        errors = self.check_any(types, raw, name)
        if errors:
            return None, _type_error(name, types, errors)
        return raw, None

    def _coerce_text(
        self, types: list[str], raw: str, name: str, uploads: dict[str, _Upload]
    ) -> tuple[Any, str | None]:
        structured = [t for t in types if t not in _SCALARS]
        for type_expr in sorted(types, key=_text_priority):
            if type_expr == "Integer":
                if _INT.match(raw.strip()):
                    return int(raw), None
            elif type_expr == "Float":
                with contextlib.suppress(ValueError):
                    return float(raw), None
            elif type_expr == "Boolean":
                if raw.strip().lower() in {"true", "false", "1", "0"}:
                    return raw.strip().lower() in {"true", "1"}, None
            elif type_expr == "InputFile":
                if raw.startswith("attach://") and raw[9:] in uploads:
                    return uploads[raw[9:]], None
            elif type_expr == "String":
                return raw, None
        if not structured:
            return None, _type_error(name, types, [f"{name}: got {raw!r}"])
        try:  # arrays and objects travel JSON-encoded
            parsed = json.loads(raw)
        except ValueError:
            return None, _type_error(name, types, [f"{name}: not valid JSON"])
        errors = self.check_any(structured, parsed, name)
        return (None, _type_error(name, types, errors)) if errors else (parsed, None)


def _text_priority(type_expr: str) -> int:
    order = {"Integer": 0, "Float": 1, "Boolean": 2, "InputFile": 3, "String": 9}
    return order.get(type_expr, 5)


_SCALARS = frozenset({"Integer", "Float", "Boolean", "String", "InputFile"})


def _type_error(name: str, types: list[str], errors: list[str]) -> str:
    objects = [t for t in types if t not in _SCALARS]
    if objects and any(": expected" not in e or "." in e.split(":")[0] for e in errors):
        return f"Bad Request: can't parse {name}: {'; '.join(errors[:3])}"
    return f'Bad Request: parameter "{name}" must be {_or(types)}: {"; ".join(errors[:3])}'


def _or(types: list[str]) -> str:
    return " or ".join(types)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
