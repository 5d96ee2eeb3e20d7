"""Block Kit for the Slack adapter: modals, the App Home tab and DM messages.

Pure functions from core replies and catalogue texts to Slack's JSON; no I/O, so these can
be read against Slack's docs.
Every word comes from the catalogue (``variant="slack"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from bot.flow import Action, Reply
from bot.moderation import Result
from bot.texts import Catalogue

VARIANT = "slack"

#: callback_id of the two modal steps that take input.
PHONE_VIEW = "verifybot.phone"
CODE_VIEW = "verifybot.code"
#: callback_id of a modal that only shows something (sending, verified, cancelled).
INFO_VIEW = "verifybot.info"

#: block_id and action_id of the inputs (also the keys of ``response_action: errors``).
PHONE_INPUT = "phone"
CODE_INPUT = "code"

#: action_id of each button; SHARE_CONTACT is Telegram's and has no Slack button.
ACTION_IDS: dict[Action, str] = {
    Action.START: "verifybot.start",
    Action.RESEND: "verifybot.resend",
    Action.CHANGE_NUMBER: "verifybot.change_number",
    Action.CANCEL: "verifybot.cancel",
}
ACTIONS_BY_ID = {action_id: action for action, action_id in ACTION_IDS.items()}

#: /verifybot's buttons (under its ephemeral answers) and the "Grant a role" shortcut.
PAGE_PREVIOUS = "verifybot.admin.previous"
PAGE_NEXT = "verifybot.admin.next"
UNLINK_CONFIRM = "verifybot.admin.unlink"
UNLINK_CANCEL = "verifybot.admin.unlink_cancel"
GRANT_SHORTCUT = "verifybot.grant_role"
GRANT_VIEW = "verifybot.grant"
ROLE_INPUT = "role"

# Slack refuses a section text over 3000 characters; ours are far shorter, but a long
# operator override must not make a whole view fail.
_MAX_SECTION = 3000


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_MAX_SECTION]}}


def escape(text: str) -> str:
    """Slack's three control characters, so that a member's display name cannot ping
    ``<!here>`` or forge a link in what the bot posts about them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Views:
    """The views for one member's language."""

    def __init__(self, catalogue: Catalogue, locale: str | None) -> None:
        self.catalogue = catalogue
        self.locale = locale

    def text(self, key: str, **params: Any) -> str:
        return self.catalogue.text(key, self.locale, variant=VARIANT, **params)

    def render(self, reply: Reply) -> str:
        return self.catalogue.render(reply, self.locale, variant=VARIANT)

    def short(self, reply: Reply) -> str:
        """The reply alone, without the code warning: for an inline error under an input
        whose view already shows the warning."""
        return self.catalogue.text(reply.key, self.locale, variant=VARIANT, **reply.params)

    # --- pieces ------------------------------------------------------------------------

    def buttons(self, actions: Iterable[Action], *, value: str = "") -> list[dict[str, Any]]:
        elements = [
            {
                "type": "button",
                "action_id": ACTION_IDS[action],
                "text": _plain(self.catalogue.action_label(action, self.locale, variant=VARIANT)),
                "value": value or action.value,
                **({"style": "primary"} if action is Action.START else {}),
            }
            for action in dict.fromkeys(actions)
            if action in ACTION_IDS
        ]
        return [{"type": "actions", "elements": elements}] if elements else []

    def reply_blocks(self, replies: Sequence[Reply]) -> list[dict[str, Any]]:
        blocks = [_section(self.render(reply)) for reply in replies]
        return blocks + self.buttons(a for reply in replies for a in reply.actions)

    def _modal(
        self,
        callback_id: str,
        blocks: list[dict[str, Any]],
        metadata: str,
        submit: str | None,
        *,
        title: str | None = None,
    ) -> dict[str, Any]:
        view: dict[str, Any] = {
            "type": "modal",
            "callback_id": callback_id,
            "title": _plain((title or self.text("modal.title"))[:24]),
            "close": _plain(self.text("modal.close")),
            "blocks": blocks,
            "private_metadata": metadata,
        }
        if submit is not None:
            view["submit"] = _plain(submit)
        return view

    # --- modals --------------------------------------------------------------------------

    def phone_modal(self, replies: Sequence[Reply], metadata: str) -> dict[str, Any]:
        # Actions other than Cancel make no sense beside a phone form.
        notes = [_section(self.render(reply)) for reply in replies]
        field = {
            "type": "input",
            "block_id": PHONE_INPUT,
            "label": _plain(self.text("modal.phone_label")),
            "hint": _plain(self.text("modal.phone_hint")),
            "element": {
                "type": "plain_text_input",
                "action_id": PHONE_INPUT,
                "placeholder": _plain(self.text("modal.phone_placeholder")),
                "max_length": 32,
            },
        }
        return self._modal(PHONE_VIEW, [*notes, field], metadata, self.text("modal.send_code"))

    def code_modal(self, replies: Sequence[Reply], metadata: str) -> dict[str, Any]:
        notes = [_section(self.render(reply)) for reply in replies]
        field = {
            "type": "input",
            "block_id": CODE_INPUT,
            "label": _plain(self.text("modal.code_label")),
            "element": {
                "type": "plain_text_input",
                "action_id": CODE_INPUT,
                "placeholder": _plain(self.text("modal.code_placeholder")),
                "max_length": 16,
            },
        }
        actions = self.buttons((Action.RESEND, Action.CHANGE_NUMBER, Action.CANCEL))
        blocks = [*notes, field, *actions]
        return self._modal(CODE_VIEW, blocks, metadata, self.text("modal.check_code"))

    def info_modal(self, replies: Sequence[Reply], metadata: str) -> dict[str, Any]:
        return self._modal(INFO_VIEW, self.reply_blocks(replies), metadata, None)

    def checking_modal(self, metadata: str) -> dict[str, Any]:
        return self._modal(INFO_VIEW, [_section(self.text("modal.checking"))], metadata, None)

    # --- App Home --------------------------------------------------------------------------

    def home(self, status: str) -> dict[str, Any]:
        return {
            "type": "home",
            "blocks": [
                {"type": "header", "text": _plain(self.text("home.heading"))},
                _section(status),
                *self.buttons((Action.START,)),
            ],
        }

    # --- messages ------------------------------------------------------------------------

    def message(self, replies: Sequence[Reply]) -> tuple[str, list[dict[str, Any]]]:
        """``text`` (notifications, screen readers) and ``blocks`` for chat.postMessage."""
        return "\n".join(self.render(r) for r in replies), self.reply_blocks(replies)

    def invite(self) -> tuple[str, list[dict[str, Any]]]:
        text = self.text("invite.text")
        return text, [_section(text), *self.buttons((Action.START,))]

    # --- the moderators' desk -------------------------------------------------------------

    def admin_text(self, reply: Reply) -> str:
        """A moderator's reply, escaped: it names members by their display names."""
        return escape(self.render(reply))

    def admin_message(self, key: str, **params: Any) -> tuple[str, list[dict[str, Any]]]:
        text = self.text(key, **params)
        return text, [_section(text)]

    def help(self, *, unknown: str | None = None) -> tuple[str, list[dict[str, Any]]]:
        texts = [self.text("admin.unknown", command=escape(unknown))] if unknown else []
        texts.append(self.text("admin.help"))
        return "\n".join(texts), [_section(text) for text in texts]

    def usage(self, command: str) -> tuple[str, list[dict[str, Any]]]:
        return self.admin_message("admin.needs", usage=self.text(f"admin.usage.{command}"))

    def result(self, result: Result) -> tuple[str, list[dict[str, Any]]]:
        """``text`` and ``blocks`` for an ephemeral answer, with the paging or the
        confirmation buttons the result offers."""
        texts = [self.admin_text(reply) for reply in result.replies]
        blocks = [_section(text) for text in texts]
        buttons: list[dict[str, Any]] = []
        if result.paging is not None:
            page, pages = result.paging.page, result.paging.pages
            if page > 1:
                buttons.append(self._button(PAGE_PREVIOUS, "admin.previous", str(page - 1)))
            if page < pages:
                buttons.append(self._button(PAGE_NEXT, "admin.next", str(page + 1)))
        if result.confirm is not None:
            confirm = self._button(UNLINK_CONFIRM, "admin.unlink", result.confirm)
            buttons += [
                {**confirm, "style": "danger"},
                self._button(UNLINK_CANCEL, "admin.cancel", result.confirm),
            ]
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
        return "\n".join(texts), blocks

    def _button(self, action_id: str, label: str, value: str) -> dict[str, Any]:
        return {
            "type": "button",
            "action_id": action_id,
            "text": _plain(self.text(label)),
            "value": value,
        }

    def grant_modal(
        self, member: str, roles: Sequence[tuple[str, str]], metadata: str
    ) -> dict[str, Any]:
        """Pick a role for ``member`` (a ``<@U…>`` mention); ``roles`` are (name, description)."""
        options = []
        for name, description in roles[:100]:  # Slack's limit for a static select
            option: dict[str, Any] = {"text": _plain(name[:75]), "value": name}
            if description:
                option["description"] = _plain(description[:75])
            options.append(option)
        field = {
            "type": "input",
            "block_id": ROLE_INPUT,
            "label": _plain(self.text("admin.role_label")),
            "element": {"type": "static_select", "action_id": ROLE_INPUT, "options": options},
        }
        blocks = [_section(self.text("admin.grant_prompt", member=member)), field]
        return self._modal(
            GRANT_VIEW,
            blocks,
            metadata,
            self.text("admin.grant"),
            title=self.text("admin.grant_title"),
        )

    def grant_outcome(self, blocks: list[dict[str, Any]], metadata: str) -> dict[str, Any]:
        """The grant modal once submitted: one moment…, then what happened."""
        return self._modal(INFO_VIEW, blocks, metadata, None, title=self.text("admin.grant_title"))

    def working(self) -> list[dict[str, Any]]:
        return [_section(self.text("admin.working"))]


def metadata(locale: str | None, display_name: str | None) -> str:
    """What a modal carries between steps: the member's language and name, so that a
    submission needs no users.info call. The conversation itself lives in the core."""
    return json.dumps({"locale": locale, "name": display_name}, separators=(",", ":"))


def element_state(view: dict[str, Any], block: str) -> dict[str, Any]:
    """What the member entered in the input ``block`` (block_id = action_id = block, as the
    views here build them), or {} when a submission does not carry it as Slack would."""
    node: Any = view.get("state")
    for key in ("values", block, block):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def read_metadata(raw: str | None) -> tuple[str | None, str | None] | None:
    try:
        data = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    locale, name = data.get("locale"), data.get("name")
    return (
        locale if isinstance(locale, str) else None,
        name if isinstance(name, str) else None,
    )
