"""``adapters.telegram.polling.parse_update`` builds the same objects as PTB's ``Update.de_json``,
attribute by attribute, for the plain messages it parses itself and for everything it hands on."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from telegram import Bot, TelegramObject, Update
from telegram.ext import Defaults, ExtBot

from adapters.telegram.polling import parse_update

ADA = {"id": 700000001, "is_bot": False, "first_name": "Ada", "language_code": "en"}
PRIVATE = {"id": 700000001, "first_name": "Ada", "type": "private"}


def message(**fields: Any) -> dict[str, Any]:
    return {"message_id": 7, "from": ADA, "chat": PRIVATE, "date": 1764870000, **fields}


UPDATES = [
    {"update_id": 1, "message": message(text="+44 7400 654321")},
    {
        "update_id": 2,
        "message": message(
            text="/start g-1001234", entities=[{"offset": 0, "length": 6, "type": "bot_command"}]
        ),
    },
    {
        "update_id": 3,
        "message": message(
            contact={"phone_number": "447400654321", "first_name": "Ada", "user_id": 700000001}
        ),
    },
    # Fields PTB does not know go to api_kwargs, at every level.
    {
        "update_id": 4,
        "message": message(
            text="hi",
            **{"from": {**ADA, "username": "ada", "is_premium": True, "future": 1}},
            chat={**PRIVATE, "future_chat_field": "x"},
        ),
    },
    {"update_id": 5, "message": {**message(text="hi"), "from": None}},
    {"update_id": 6, "message": message(text="hi", entities=None)},
    # Handed to PTB whole: other fields, other update kinds, a group's service message.
    {"update_id": 7, "message": message(text="see https://x.org", link_preview_options={})},
    {"update_id": 8, "edited_message": message(text="edited")},
    {
        "update_id": 9,
        "message": message(
            chat={"id": -1001, "title": "G", "type": "supergroup"}, new_chat_members=[ADA]
        ),
    },
    {
        "update_id": 10,
        "callback_query": {"id": "q", "from": ADA, "chat_instance": "c", "data": "vb:resend"},
    },
    {"update_id": 11, "message": message(text="hi"), "edited_message": message(text="hi")},
]


def same(a: object, b: object, where: str = "update") -> None:
    """Equal values of the same types, through every slot of every Telegram object."""
    assert type(a) is type(b), where
    if isinstance(a, TelegramObject):
        assert isinstance(b, TelegramObject)
        slots = {s for cls in type(a).__mro__ for s in getattr(cls, "__slots__", ())}
        for slot in sorted(slots - {"_bot"}):
            same(getattr(a, slot, None), getattr(b, slot, None), f"{where}.{slot}")
        assert a.get_bot() is b.get_bot(), where
    elif isinstance(a, tuple | list):
        assert isinstance(b, tuple | list)
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{n}]")
    elif isinstance(a, dict):
        assert a == b, where
    else:
        assert a == b, where
        if isinstance(a, dt.datetime):
            assert isinstance(b, dt.datetime)
            assert a.tzinfo == b.tzinfo, where


@pytest.mark.parametrize("raw", UPDATES, ids=[str(u["update_id"]) for u in UPDATES])
@pytest.mark.parametrize("tz", [None, dt.timezone(dt.timedelta(hours=2))])
def test_the_same_objects_as_ptb(raw: dict[str, Any], tz: dt.tzinfo | None) -> None:
    bot: Bot = ExtBot("123:abc", defaults=Defaults(tzinfo=tz)) if tz else Bot("123:abc")
    before = copy.deepcopy(raw)
    ours = parse_update(raw, bot)
    theirs = Update.de_json(raw, bot)
    same(ours, theirs)
    assert ours.to_dict() == theirs.to_dict()
    assert raw == before  # the inbox keeps it as Telegram sent it
