"""The Slack emulator against Slack's OpenAPI description and the real slack-sdk client.

Every method the adapter (and the upcoming roles work) uses is called here through
``AsyncWebClient``; each success answer is validated against the spec's response schema
by the emulator itself (``internal_errors``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.e2e.slack_harness import find_specs
from tests.emulators.slack import DOCS_METHODS, SlackEmulator, validate

USED_METHODS = (
    "auth.test",
    "chat.postMessage",
    "chat.postEphemeral",
    "conversations.open",
    "views.open",
    "views.update",
    "views.publish",
    "users.info",
    "conversations.invite",
    "conversations.kick",
    "usergroups.users.list",
    "usergroups.users.update",
)
#: Used too, but absent from the spec: emulated from Slack's method docs (DOCS_METHODS).
DOCS_ONLY_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []}


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(find_specs() / "slack-web-api.openapi.json") as emulator:
        emulator.add_user("U0ALICE001", name="alice", locale="es-ES", is_admin=True)
        yield emulator
    assert emulator.internal_errors == []


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=emu.bot_token, base_url=emu.url)


async def error_of(call: Any) -> tuple[int, str]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value.response.status_code, caught.value.response["error"]


def test_every_method_used_is_in_the_spec(emu: SlackEmulator) -> None:
    for method in USED_METHODS:
        assert emu._operation(method) is not None, method


def test_methods_described_from_the_docs_are_the_ones_the_spec_lacks(emu: SlackEmulator) -> None:
    # When the spec grows them, DOCS_METHODS should go and the spec's own take over.
    assert set(DOCS_METHODS) == set(DOCS_ONLY_METHODS)
    for method in DOCS_ONLY_METHODS:
        assert "/" + method not in emu.spec["paths"], method


async def test_auth_and_token(emu: SlackEmulator, client: AsyncWebClient) -> None:
    answer = await client.auth_test()
    assert answer["team_id"] == emu.team_id and answer["user_id"] == emu.bot_user_id
    stranger = AsyncWebClient(token="xoxb-wrong", base_url=emu.url)
    assert await error_of(stranger.auth_test()) == (200, "invalid_auth")


async def test_unknown_or_missing_arguments_are_refused(client: AsyncWebClient) -> None:
    _, error = await error_of(client.chat_postMessage(channel="U0ALICE001", text="hi", txt="hi"))
    assert error == "invalid_arguments"
    assert (await error_of(client.api_call("chat.postMessage", json={"text": "x"})))[1] == (
        "invalid_arguments"
    )


async def test_users_info_gives_the_locale_only_when_asked(client: AsyncWebClient) -> None:
    plain = await client.users_info(user="U0ALICE001")
    assert "locale" not in plain["user"]
    with_locale = await client.users_info(user="U0ALICE001", include_locale=True)
    assert with_locale["user"]["locale"] == "es-ES" and with_locale["user"]["is_admin"]
    assert (await error_of(client.users_info(user="U0NOBODY01")))[1] == "user_not_found"


async def test_dms_and_messages(emu: SlackEmulator, client: AsyncWebClient) -> None:
    opened = await client.conversations_open(users="U0ALICE001")
    channel = opened["channel"]["id"]
    assert channel.startswith("D") and not opened["already_open"]
    assert (await client.conversations_open(users="U0ALICE001"))["already_open"]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    posted = await client.chat_postMessage(channel=channel, text="hi", blocks=blocks)
    assert posted["channel"] == channel
    await client.chat_postEphemeral(channel="C0GENERAL1", user="U0ALICE001", text="psst")
    assert emu.dm_messages("U0ALICE001")[0]["blocks"] == blocks
    assert emu.messages["C0GENERAL1"][0]["ephemeral_for"] == "U0ALICE001"


async def test_a_trigger_id_works_once_and_for_three_seconds(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    trigger = emu.new_trigger()
    view = (await client.views_open(trigger_id=trigger, view=MODAL))["view"]
    assert view["id"].startswith("V") and view["hash"]
    assert (await error_of(client.views_open(trigger_id=trigger, view=MODAL)))[1] == (
        "expired_trigger_id"
    )
    old = emu.new_trigger()
    emu._triggers[old] = (time.monotonic() - 3.5, False)
    assert (await error_of(client.views_open(trigger_id=old, view=MODAL)))[1] == (
        "expired_trigger_id"
    )
    assert (await error_of(client.views_open(trigger_id="1.2.x", view=MODAL)))[1] == (
        "invalid_trigger_id"
    )


async def test_views_update_checks_the_hash(emu: SlackEmulator, client: AsyncWebClient) -> None:
    view = (await client.views_open(trigger_id=emu.new_trigger(), view=MODAL))["view"]
    updated = await client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)
    assert updated["view"]["hash"] != view["hash"]
    stale = client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)
    assert (await error_of(stale))[1] == "hash_conflict"
    home = {"type": "home", "blocks": []}
    await client.views_publish(user_id="U0ALICE001", view=home)
    assert emu.published["U0ALICE001"] == home


async def test_injected_errors_must_be_ones_the_spec_lists(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.inject("chat.postMessage", error="not_in_channel")
    failing = client.chat_postMessage(channel="C0GENERAL1", text="x")
    assert await error_of(failing) == (200, "not_in_channel")
    await client.chat_postMessage(channel="C0GENERAL1", text="x")  # one-shot
    with pytest.raises(ValueError, match="no 'cannot_dm_bot'"):
        emu.inject("chat.postMessage", error="cannot_dm_bot")


async def test_rate_limits_carry_retry_after(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.inject_rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C0GENERAL1", text="x")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    emu.inject_rate_limit("chat.postMessage", retry_after=0)
    patient = AsyncWebClient(
        token=emu.bot_token,
        base_url=emu.url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    assert (await patient.chat_postMessage(channel="C0GENERAL1", text="x"))["ok"]


async def test_users_info_tells_admins_and_owners(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_user("U0OWNER001", is_owner=True)
    emu.add_user("U0PLAIN001")
    flags = {}
    for user in ("U0ALICE001", "U0OWNER001", "U0PLAIN001"):
        answer = (await client.users_info(user=user))["user"]
        flags[user] = (answer["is_admin"], answer["is_owner"])
    assert flags == {
        "U0ALICE001": (True, False),
        "U0OWNER001": (False, True),
        "U0PLAIN001": (False, False),
    }
    emu.users["U0PLAIN001"]["is_admin"] = True  # promoted in the workspace
    assert (await client.users_info(user="U0PLAIN001"))["user"]["is_admin"]


async def test_channel_invites_and_kicks(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.add_channel("C0VERIFIED", name="verified")
    invited = await client.conversations_invite(channel="C0VERIFIED", users="U0ALICE001")
    assert invited["channel"]["id"] == "C0VERIFIED"
    assert emu.channels["C0VERIFIED"].members == {"U0ALICE001"}
    again = client.conversations_invite(channel="C0VERIFIED", users="U0ALICE001")
    assert (await error_of(again))[1] == "already_in_channel"
    await client.conversations_kick(channel="C0VERIFIED", user="U0ALICE001")
    assert emu.channels["C0VERIFIED"].members == set()
    gone = client.conversations_kick(channel="C0VERIFIED", user="U0ALICE001")
    assert (await error_of(gone))[1] == "not_in_channel"


async def test_channels_the_test_marks_refuse_invites(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_channel("C0ARCHIVED", archived=True)
    emu.add_channel("C0NOBOT001", bot_in=False)
    emu.add_channel("G0SECRET01", private=True, bot_in=False)
    errors = [
        (await error_of(client.conversations_invite(channel=channel, users="U0ALICE001")))[1]
        for channel in ("C0ARCHIVED", "C0NOBOT001", "G0SECRET01", "C0NOWHERE1")
    ]
    assert errors == ["is_archived", "not_in_channel", "channel_not_found", "channel_not_found"]
    emu.add_channel("C0GENERAL1", general=True, members=("U0ALICE001",))
    kick = client.conversations_kick(channel="C0GENERAL1", user="U0ALICE001")
    assert (await error_of(kick))[1] == "cant_kick_from_general"


async def test_usergroups_replace_the_whole_list(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_user("U0BOB00001")
    emu.usergroups["S0VERIFIED"] = ["U0BOB00001"]
    await client.usergroups_users_update(usergroup="S0VERIFIED", users="U0ALICE001")
    listed = await client.usergroups_users_list(usergroup="S0VERIFIED")
    assert listed["users"] == ["U0ALICE001"]  # replaced, not added to
    await client.usergroups_users_update(usergroup="S0VERIFIED", users=["U0ALICE001", "U0BOB00001"])
    assert emu.usergroups["S0VERIFIED"] == ["U0ALICE001", "U0BOB00001"]
    empty = client.usergroups_users_update(usergroup="S0VERIFIED", users="")
    assert (await error_of(empty))[1] == "no_users_provided"
    unknown = client.usergroups_users_list(usergroup="S0NOTHING1")
    assert (await error_of(unknown))[1] == "no_such_subteam"


async def test_a_free_workspace_has_no_usergroups(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.usergroups["S0VERIFIED"] = ["U0ALICE001"]
    # Absent from the spec's enum, listed by Slack's docs: injectable all the same.
    emu.inject("usergroups.users.update", error="plan_upgrade_required")
    update = client.usergroups_users_update(usergroup="S0VERIFIED", users="U0ALICE001")
    assert (await error_of(update))[1] == "plan_upgrade_required"
    emu.free_plan = True
    listing = client.usergroups_users_list(usergroup="S0VERIFIED")
    assert (await error_of(listing))[1] == "plan_upgrade_required"
    with pytest.raises(ValueError, match="no 'cant_kick_self'"):
        emu.inject("usergroups.users.update", error="cant_kick_self")


async def test_files_upload_v2_into_a_dm(emu: SlackEmulator, client: AsyncWebClient) -> None:
    dm = (await client.conversations_open(users="U0ALICE001"))["channel"]["id"]
    content = "member,phone\nalice,+44•••••3456\n".encode()
    answer = await client.files_upload_v2(
        channel=dm, content=content, filename="export.csv", initial_comment="1 member"
    )
    assert answer["file"]["id"].startswith("F")
    assert [c.method for c in emu.calls] == [
        "conversations.open",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    (upload,) = emu.files
    assert (upload.filename, upload.content, upload.channels) == ("export.csv", content, (dm,))
    message = emu.dm_messages("U0ALICE001")[-1]
    assert message["text"] == "1 member" and message["files"][0]["name"] == "export.csv"


async def test_an_upload_must_be_sent_before_it_is_completed(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    ticket = await client.files_getUploadURLExternal(filename="x.csv", length=3)
    done = client.files_completeUploadExternal(files=[{"id": ticket["file_id"], "title": "x"}])
    assert (await error_of(done))[1] == "file_not_found"
    nowhere = client.files_upload_v2(channel="C0NOWHERE1", content=b"abc", filename="x.csv")
    assert (await error_of(nowhere))[1] == "channel_not_found"
    assert emu.files == []


async def test_response_urls_keep_what_the_app_posts(emu: SlackEmulator) -> None:
    url = emu.new_response_url()
    webhook = AsyncWebhookClient(url)
    assert (await webhook.send(text="only you can see this")).status_code == 200
    await webhook.send_dict({"text": "page 2", "replace_original": True})
    assert [r["text"] for r in emu.responded(url)] == ["only you can see this", "page 2"]
    assert emu.responded(url)[1]["replace_original"] is True
    unknown = AsyncWebhookClient(url.rsplit("/", 1)[0] + "/R000000000")
    assert (await unknown.send(text="x")).status_code == 404


async def test_socket_mode_url_needs_the_app_token(emu: SlackEmulator) -> None:
    app = AsyncWebClient(base_url=emu.url)
    answer = await app.apps_connections_open(app_token=emu.app_token)
    assert answer["url"].startswith(f"ws://127.0.0.1:{emu.port}/")
    assert (await error_of(app.apps_connections_open(app_token="xapp-wrong")))[1] == "invalid_auth"


async def test_every_call_is_recorded(emu: SlackEmulator, client: AsyncWebClient) -> None:
    before = time.time()
    await client.users_info(user="U0ALICE001", include_locale=True)
    call = emu.calls[-1]
    assert call.method == "users.info" and call.args["user"] == "U0ALICE001"
    assert call.at >= before


def test_the_validator_can_fail() -> None:
    spec = json.loads((find_specs() / "slack-web-api.openapi.json").read_text())
    schema = spec["paths"]["/chat.postMessage"]["post"]["responses"]["200"]["schema"]
    good = {
        "ok": True,
        "channel": "D000000001",
        "ts": "1700000000.000001",
        "message": {"type": "message", "text": "x", "ts": "1700000000.000001"},
    }
    assert validate(good, schema, spec) == []
    assert validate({**good, "ts": "soon"}, schema, spec)
    assert validate({**good, "extra": 1}, schema, spec)
    assert validate({"ok": True}, schema, spec)
