"""The emulator's HTTP server: a request's parameters and uploads out of its body, and the
answer the emulator gives."""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs

from tests.emulators._http import JsonHandler, TrackedServer
from tests.emulators.telegram_spec import _Upload

# -- HTTP plumbing ----------------------------------------------------------------------------


def _parse_request(
    content_type: str, raw: bytes, query: str
) -> tuple[dict[str, Any], dict[str, _Upload]]:
    """(parameters, file parts by name); ValueError for a body that is not what it claims."""
    params: dict[str, Any] = _form(query)
    uploads: dict[str, _Upload] = {}
    if not raw:
        return params, uploads
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"can't parse JSON object: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("the JSON body must be an object")
        params.update({k: v for k, v in parsed.items() if v is not None})
    elif kind == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        if not message.is_multipart():
            raise ValueError("can't parse multipart body")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = part.get_payload(decode=True) or b""
            assert isinstance(data, bytes)
            filename = part.get_filename()
            if filename is not None:
                upload = _Upload(filename, part.get_content_type(), data)
                uploads[name] = upload
                params[name] = upload
            else:
                params[name] = data.decode(part.get_content_charset() or "utf-8")
    else:
        try:
            params.update(_form(raw.decode()))
        except UnicodeDecodeError as exc:
            raise ValueError("the body is not UTF-8") from exc
    return params, uploads


def _form(text: str) -> dict[str, Any]:
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


#: What the emulator answers a request with: (method, target, headers, body) -> (status, JSON).
Answer = Callable[[str, str, dict[str, str], bytes], tuple[int, Any]]


class _Server(TrackedServer):
    def __init__(self, address: tuple[str, int], answer: Answer) -> None:
        self.answer = answer
        super().__init__(address, _RequestHandler)


class _RequestHandler(JsonHandler):
    server_version = "telegram-emulator"

    def answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, str]:
        status, body = cast(_Server, self.server).answer(method, target, headers, raw)
        return status, body, "application/json"
