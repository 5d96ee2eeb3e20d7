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

__all__ = ["COLUMNS", "export_rows", "link_row", "render"]

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
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "roles": " ".join(row["roles"]), **_no_formulas(row)})
        return buffer.getvalue().rstrip("\n")
    cells = [[str(c) for c in COLUMNS]] + [
        [" ".join(v) if isinstance(v, list) else str(v) for v in row.values()] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _no_formulas(row: dict[str, Any]) -> dict[str, Any]:
    """Display names are chosen by members: keep a spreadsheet from running one as a formula."""
    name = row["display_name"]
    return {"display_name": "'" + name if name[:1] in ("=", "+", "-", "@") else name}
