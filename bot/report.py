"""Members as rows: one shape for ``verifybot users``, the CSV export and ``/export``.

Phone numbers are masked unless an admin asks for them (``reveal_phones``), and whoever
asks is audited by the caller.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from bot.directory import PhoneLink
from bot.privacy import mask_phone

__all__ = ["COLUMNS", "Format", "export_rows", "link_row", "render"]

COLUMNS: Final = (
    "platform", "scope", "user_id", "display_name", "handle", "phone", "country", "verified",
    "verified_at", "roles",
)  # fmt: skip

Format = Literal["table", "json", "csv"]


def link_row(link: PhoneLink, *, reveal_phones: bool = False) -> dict[str, Any]:
    phone = link.phone_e164 or ""
    return {
        "platform": link.platform,
        "scope": link.scope,
        "user_id": link.user_id,
        "display_name": link.display_name or "",
        "handle": link.handle or "",
        "phone": phone if reveal_phones or not phone else mask_phone(phone),
        "country": link.country or "",
        "verified": link.is_phone_verified,
        "verified_at": link.verified_at.isoformat() if link.verified_at else "",
        "roles": list(link.roles),
    }


def export_rows(links: Iterable[PhoneLink], *, reveal_phones: bool = False) -> list[dict[str, Any]]:
    return [link_row(link, reveal_phones=reveal_phones) for link in links]


def render(rows: Sequence[dict[str, Any]], fmt: Format | str) -> str:
    """Rows as a table, JSON or CSV; lists (roles) become space-separated words."""
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False, indent=2)
    columns = tuple(rows[0]) if rows else COLUMNS
    flat = [{k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_no_formulas(row) for row in flat)
        return buffer.getvalue().rstrip("\n")
    cells = [list(columns)] + [[str(row[c]) for c in columns] for row in flat]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


#: Free text that members or operators choose, which a spreadsheet might run as a formula.
_FREE_TEXT: Final = frozenset({"display_name", "handle", "description"})


def _no_formulas(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: "'" + v if k in _FREE_TEXT and str(v)[:1] in ("=", "+", "-", "@") else v
        for k, v in row.items()
    }
