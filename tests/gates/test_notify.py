"""Notifications reach a real webhook and a real mail server, never hold up containment, and
every delivery is recorded in the incident, the audit log and the postmortem."""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import apprise
import pytest
from aiosmtpd.controller import Controller

from evalsuite import InvalidInput
from gates import (
    Config,
    Guard,
    Workspace,
    agent_mode,
    check,
    contain,
    notify_failed_gate,
    open_incident,
    open_store,
    read_mode,
    restore,
)
from regressions import utc_now
from tests.conftest import RunCli
from tests.helpers import ACTOR

ROOT = Path(__file__).resolve().parents[2]
Cli = Callable[..., tuple[int, str, str]]
SECRET = "hunter2-s3cr3t-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Webhook:
    """A local HTTP receiver: every POST's JSON body and headers, in order of arrival."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None
    """When set, each request waits for this event before answering (a hanging service)."""
    arrived: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    """Set once a request has been answered."""
    on_arrival: Callable[[], None] | None = None

    def url(self, path: str = "hook") -> str:
        """The Apprise URL of this receiver."""
        return f"json://127.0.0.1:{self.port}/{path}"


def _serve(hook: Webhook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if hook.on_arrival is not None:
                hook.on_arrival()
            hook.arrived.set()
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            hook.headers.append(dict(self.headers))
            if hook.hold is not None:
                hook.hold.wait(60)
            self.send_response(200)
            self.end_headers()
            hook.answered.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A JSON webhook receiver on a local port."""
    hook = Webhook(port=0)
    server = _serve(hook)
    yield hook
    if hook.hold is not None:
        hook.hold.set()
    server.shutdown()
    server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class MailServer:
    """A local SMTP server (aiosmtpd) and what it received."""

    port: int
    box: _Mailbox

    def url(self, to: str) -> str:
        """Apprise's URL for plain SMTP (no TLS) to this server."""
        return (f"mailto://127.0.0.1:{self.port}?mode=insecure"
                f"&from=reinstate@example.com&to={to}")


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """An SMTP server on a local port, as aiosmtpd runs one."""
    box = _Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield MailServer(port=port, box=box)
    controller.stop()


def _configure(ws: Workspace, audiences: dict[str, list[str]],
               **settings: float | bool) -> Workspace:
    lines = ["", "[notify]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += [f"{json.dumps(name)} = {json.dumps(urls)}" for name, urls in audiences.items()]
    config = ws.root / "reinstate.toml"
    config.write_text(config.read_text() + "\n".join(lines) + "\n")
    return Workspace.find(ws.root)


def _open(ws: Workspace) -> str:
    return open_incident(ws, "refund-agent", summary="refunded $420 to the wrong account",
                         severity="sev2", actor=ACTOR,
                         detected_at=utc_now() - timedelta(hours=1)).id


def _contain(cli: Cli, ws: Workspace, incident_id: str, notify: str) -> tuple[int, str, str]:
    return cli(ws, "contain", incident_id, "--mode", "review", "--notify", notify,
               "--scope", "one customer, one refund")


@pytest.mark.slow
def test_containment_tells_a_webhook_and_a_mail_server_and_records_both(
        example: Workspace, inline_cli: Cli, webhook: Webhook, mail_server: MailServer,
) -> None:
    """Containing the example sends the incident to a local webhook and a local mail server,
    and the incident file, the audit log and `incident show` record both deliveries."""
    ws = _configure(example, {"legal": [mail_server.url("legal@example.com")],
                              "eng-lead": [webhook.url()]})
    incident_id = _open(ws)
    code, out, err = _contain(inline_cli, ws, incident_id, "legal,eng-lead")
    assert code == 0, err
    assert len(webhook.received) == 1, out + err
    (sent,) = webhook.received
    for fact in (incident_id, "refunded $420 to the wrong account", "sev2", "review",
                 "one customer, one refund", "What happens next"):
        assert fact in sent["title"] + sent["message"]
    (mail,) = mail_server.box.messages
    assert mail_server.box.recipients == [["legal@example.com"]]
    assert incident_id in str(mail["Subject"])
    incident = ws.incidents().load(incident_id)
    assert [(n.event, n.audience, n.service, n.status) for n in incident.notifications] == [
        ("contain", "legal", "mailto", "sent"), ("contain", "eng-lead", "json", "sent")]
    entries = [e for e in open_store(ws).audit("refund-agent") if e.action == "notify"]
    assert [(e.detail["audience"], e.detail["status"], e.detail["incident"])
            for e in entries] == [("legal", "sent", incident_id),
                                  ("eng-lead", "sent", incident_id)]
    assert "told legal by mailto" in out and "told eng-lead by json" in out


@pytest.mark.slow
def test_a_hanging_receiver_holds_containment_no_longer_than_its_bound(
        example: Workspace, webhook: Webhook) -> None:
    """A service that never answers leaves the agent contained first, lets containment
    return while it still hangs, and is recorded as a failed delivery."""
    ws = _configure(example, {"eng-lead": [webhook.url()]}, timeout_s=1, total_s=30)
    webhook.hold = threading.Event()
    modes: list[str] = []
    webhook.on_arrival = lambda: modes.append(read_mode(ws, "refund-agent").mode)
    done = contain(ws, _open(ws), mode="suspended", notify=["eng-lead"], scope="one refund",
                   actor=ACTOR)
    still_hanging = webhook.arrived.is_set() and not webhook.answered.is_set()
    webhook.hold.set()
    assert still_hanging
    assert modes == ["suspended"]  # the mode was in force before any message went out
    (delivery,) = done.notifications
    assert delivery.status == "failed" and delivery.reason
    assert read_mode(ws, "refund-agent").mode == "suspended"
    assert any("eng-lead was not notified by json" in w for w in done.warnings)


@pytest.mark.slow
def test_deliveries_past_the_total_bound_are_given_up(example: Workspace,
                                                      webhook: Webhook) -> None:
    """With a service slower than ``total_s``, containment returns at the bound and records
    the delivery as failed for want of an answer."""
    ws = _configure(example, {"eng-lead": [webhook.url()]}, timeout_s=60, total_s=1)
    webhook.hold = threading.Event()
    done = contain(ws, _open(ws), mode="review", notify=["eng-lead"], scope="one refund",
                   actor=ACTOR)
    answered = webhook.answered.is_set()
    webhook.hold.set()
    assert not answered
    (delivery,) = done.notifications
    assert (delivery.status, delivery.reason) == ("failed",
                                                  "no answer within 1 s ([notify] total_s)")
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
def test_the_cli_process_exits_while_a_receiver_still_hangs(
        example: Workspace, cli: RunCli, webhook: Webhook) -> None:
    """`reinstate contain` in its own process exits 0 with the agent contained while the
    receiver has not answered yet: no delivery thread keeps the process alive."""
    # A total bound that leaves a busy machine time to start the delivery at all; the
    # per-delivery timeout is what lets go of the receiver that hangs.
    ws = _configure(example, {"eng-lead": [webhook.url()]}, timeout_s=1, total_s=30)
    webhook.hold = threading.Event()
    incident_id = _open(ws)
    done = cli("contain", incident_id, "--mode", "review", "--notify", "eng-lead",
               "--scope", "one refund", cwd=ws.root)
    still_hanging = webhook.arrived.is_set() and not webhook.answered.is_set()
    webhook.hold.set()
    assert done.returncode == 0, done.stderr
    assert still_hanging
    assert "eng-lead was not notified by json" in done.stderr
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
def test_a_refused_connection_is_a_recorded_failure_and_containment_succeeds(
        example: Workspace, inline_cli: Cli) -> None:
    """A service whose port refuses connections fails its delivery with the reason, warns,
    and the containment still exits 0 with the agent in review."""
    ws = _configure(example, {"legal": [f"json://127.0.0.1:{_free_port()}/hook"]})
    incident_id = _open(ws)
    code, _, err = _contain(inline_cli, ws, incident_id, "legal")
    assert code == 0
    assert "legal was not notified by json" in err and "Connection error" in err
    (delivery,) = ws.incidents().load(incident_id).notifications
    assert delivery.status == "failed" and "Connection error" in delivery.reason
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
def test_a_secret_from_the_environment_is_sent_and_never_recorded(
        example: Workspace, inline_cli: Cli, webhook: Webhook,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``${VAR}`` in a URL is expanded at send time: the receiver gets the secret, while the
    incident file, the audit log and the terminal never hold it."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    url = f"json://reinstate:${{HOOK_SECRET}}@127.0.0.1:{webhook.port}/hook"
    ws = _configure(example, {"eng-lead": [url]})
    incident_id = _open(ws)
    code, out, err = _contain(inline_cli, ws, incident_id, "eng-lead")
    assert code == 0, err
    (headers,) = webhook.headers
    assert base64.b64decode(headers["Authorization"].split()[1]).decode() == \
        f"reinstate:{SECRET}"
    assert SECRET not in ws.incidents().path(incident_id).read_text()
    assert SECRET not in json.dumps([e.model_dump(mode="json")
                                     for e in open_store(ws).audit()])
    assert SECRET not in out + err


@pytest.mark.slow
def test_a_secret_holding_url_delimiters_is_never_recorded_in_part(
        example: Workspace, inline_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A password with an '@' in it: Apprise reads the part after it as the host and names
    that part in its failure, which went to the incident file, the audit log and the
    terminal ('A Connection error occurred sending JSON notification to 127.0.0.9.').
    No piece of the secret is recorded or printed; the containment stands."""
    tail = "127.0.0.9"
    monkeypatch.setenv("HOOK_SECRET", f"pa55w0rd@{tail}")
    url = f"json://reinstate:${{HOOK_SECRET}}@127.0.0.1:{_free_port()}/hook"
    ws = _configure(example, {"eng-lead": [url]})
    incident_id = _open(ws)
    code, out, err = _contain(inline_cli, ws, incident_id, "eng-lead")
    assert code == 0, err
    (delivery,) = ws.incidents().load(incident_id).notifications
    assert delivery.status == "failed" and delivery.reason
    for piece in (tail, "pa55w0rd"):
        assert piece not in ws.incidents().path(incident_id).read_text()
        assert piece not in json.dumps([e.model_dump(mode="json")
                                        for e in open_store(ws).audit()])
        assert piece not in out + err
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
def _said(ws: Workspace, incident_id: str, *printed: str) -> str:
    """Everything a delivery's fate was told in: the incident file, the audit log, the
    command's output."""
    audit = json.dumps([e.model_dump(mode="json") for e in open_store(ws).audit()])
    return "\n".join([ws.incidents().path(incident_id).read_text(), audit, *printed])


@pytest.mark.slow
@pytest.mark.parametrize("url", [
    # The password's tail after its '@' is taken by Apprise as the host, and named.
    "json://reinstate:${HOOK_SECRET}@127.0.0.1:{port}/hook",
    # So is a user's (a token) after its '@', written into the URL.
    "json://tok3n-part@Zq7@127.0.0.1:{port}/hook",
])
def test_a_short_piece_of_a_secret_after_an_at_is_never_printed(
        example: Workspace, cli: RunCli, url: str) -> None:
    """'pa55w0rd@Zq7': Apprise names 'Zq7' as the host it could not reach ('A Connection
    error occurred sending JSON notification to Zq7.'), which went into the incident file,
    the audit log and the warning; pieces shorter than 4 characters were never masked. No
    piece of the secret is recorded or printed now, in any case; the agent is contained."""
    ws = _configure(example, {"eng-lead": [url.replace("{port}", str(_free_port()))]})
    incident_id = _open(ws)
    done = cli("contain", incident_id, "--mode", "review", "--notify", "eng-lead",
               "--scope", "one refund", cwd=ws.root, env={"HOOK_SECRET": "pa55w0rd@Zq7"})
    assert done.returncode == 0, done.stderr
    (delivery,) = ws.incidents().load(incident_id).notifications
    assert delivery.status == "failed" and "Connection error" in delivery.reason
    said = _said(ws, incident_id, done.stdout, done.stderr).lower()
    for piece in ("pa55w0rd", "zq7", "tok3n-part"):
        assert piece not in said
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
@pytest.mark.parametrize("written", [
    '"mailtos://ops:hunter2@smtp.example.com?to=legal@example.com"',  # no list
    '["mailtos://ops:hun@ter2@smtp.example.com "]',  # a trailing space
    '["mailtos//ops:hunter2@smtp.example.com"]',  # no colon
])
def test_an_invalid_notify_url_is_refused_without_quoting_it(
        example: Workspace, cli: RunCli, written: str) -> None:
    """A URL with a password that [notify] refuses was quoted whole by every command that
    read the file ('$.notify.legal: Input should be a valid list, got 'mailtos://ops:
    hunter2@…''). The error names the place and what is wrong, never the value: not by
    the commands that refuse the file, nor by contain and mode, which set it aside."""
    config = example.root / "reinstate.toml"
    config.write_text(f"{config.read_text()}\n[notify]\nlegal = {written}\n")
    incident_id = _open(Workspace.find(example.root, containing=True))
    runs = [cli("incident", "list", cwd=example.root),
            cli("contain", incident_id, "--mode", "review", "--notify", "legal", "--scope",
                "one refund", cwd=example.root),
            cli("mode", "refund-agent", cwd=example.root)]
    assert [r.returncode for r in runs] == [2, 2, 0]
    ws = Workspace.find(example.root, containing=True)
    said = _said(ws, incident_id, *(r.stdout + r.stderr for r in runs))
    assert said.count("$.notify.legal") >= 3
    for piece in ("hunter2", "hun", "ter2", "ops"):
        assert piece not in said
    assert read_mode(ws, "refund-agent").mode == "review"


@pytest.mark.slow
def test_a_missing_variable_is_a_failure_naming_it(example: Workspace, inline_cli: Cli,
                                                   webhook: Webhook,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL whose ``${VAR}`` is not set sends nothing and records a failure naming the
    variable; containment exits 0."""
    monkeypatch.delenv("PAGER_KEY", raising=False)
    ws = _configure(example, {"eng-lead": [webhook.url("${PAGER_KEY}")]})
    incident_id = _open(ws)
    code, _, err = _contain(inline_cli, ws, incident_id, "eng-lead")
    assert code == 0 and webhook.received == []
    (delivery,) = ws.incidents().load(incident_id).notifications
    assert (delivery.status, delivery.reason) == (
        "failed", "environment variable PAGER_KEY is not set")
    assert "PAGER_KEY is not set" in err


@pytest.mark.slow
def test_an_audience_without_a_service_is_recorded_as_not_configured(
        example: Workspace, inline_cli: Cli, webhook: Webhook) -> None:
    """An audience named at containment with no URL in [notify] is recorded as not
    configured and warned about, while the configured ones are told and it exits 0."""
    ws = _configure(example, {"eng-lead": [webhook.url()]})
    incident_id = _open(ws)
    code, _, err = _contain(inline_cli, ws, incident_id, "compliance,eng-lead")
    assert code == 0 and len(webhook.received) == 1
    notifications = ws.incidents().load(incident_id).notifications
    assert [(n.audience, n.status) for n in notifications] == [
        ("compliance", "not_configured"), ("eng-lead", "sent")]
    assert "compliance was not notified: no service for it in [notify]" in err


def test_without_notify_config_nobody_is_told_and_the_user_hears_it(
        example: Workspace, inline_cli: Cli) -> None:
    """A workspace with no [notify] audiences contains as before, records no delivery and
    says that reinstate told nobody, naming the setting (``[notify]`` is not taken for
    console markup and dropped)."""
    incident_id = _open(example)
    code, _, err = _contain(inline_cli, example, incident_id, "legal")
    assert code == 0
    assert example.incidents().load(incident_id).notifications == []
    assert "note: [notify] in reinstate.toml names no audience, so reinstate told nobody" \
        in " ".join(err.split())


def test_a_notify_url_that_is_not_a_url_is_refused_with_file_and_key(
        example: Workspace, inline_cli: Cli) -> None:
    """A [notify] value that is not a service URL is one line naming reinstate.toml and the
    key, exit 2, and no incident is touched."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[notify]\nlegal = ["legal@example.com"]\n')
    before = config.parent.joinpath("incidents").exists()
    code, _, err = inline_cli(example, "incident", "list")
    assert code == 2
    assert "reinstate.toml" in err and "$.notify.legal[0]" in err
    assert "expected a service URL" in err and len(err.strip().splitlines()) == 1
    assert config.parent.joinpath("incidents").exists() == before


@pytest.mark.slow
def test_a_failed_gate_of_a_contained_agent_tells_its_audiences(
        example: Workspace, inline_cli: Cli, webhook: Webhook) -> None:
    """A gate that does not pass while an incident holds the agent contained sends the
    outcome and the failing checks to the audiences told at containment."""
    ws = _configure(example, {"eng-lead": [webhook.url()]})
    incident_id = _open(ws)
    assert _contain(inline_cli, ws, incident_id, "eng-lead")[0] == 0
    code, _, _ = inline_cli(ws, "gate", "refund-agent", "--trials", "1")
    assert code != 0
    gate_message = webhook.received[-1]
    assert len(webhook.received) == 2 and "gate of refund-agent" in gate_message["title"]
    assert "stays contained" in gate_message["message"]
    events = [(n.event, n.status) for n in ws.incidents().load(incident_id).notifications]
    assert events == [("contain", "sent"), ("gate", "sent")]


@pytest.mark.slow
def test_restore_tells_the_audiences_told_at_containment(
        restorable: Workspace, inline_cli: Cli, webhook: Webhook) -> None:
    """Restoring the agent tells each audience of its incident that it is back in full
    operation, without making the passing verdict stale."""
    ws = _configure(restorable, {"legal": [webhook.url()]})
    code, out, err = inline_cli(ws, "restore", "refund-agent")
    assert code == 0, err
    (message,) = webhook.received
    assert "restored" in message["title"] and "back in full operation" in message["message"]
    (incident_id,) = ws.incidents().ids()
    notifications = ws.incidents().load(incident_id).notifications
    assert [(n.event, n.audience, n.status) for n in notifications] == [
        ("restore", "legal", "sent"), ("restore", "compliance", "not_configured"),
        ("restore", "eng-lead", "not_configured")]  # as named at containment
    assert "told legal by json" in out


@pytest.mark.slow
def test_the_postmortem_shows_who_was_told_when(
        example: Workspace, inline_cli: Cli, webhook: Webhook) -> None:
    """The postmortem lists every delivery: when, of what, to whom, by which service, and
    how it went."""
    ws = _configure(example, {"eng-lead": [webhook.url()],
                              "legal": [f"json://127.0.0.1:{_free_port()}/down"]})
    incident_id = _open(ws)
    assert _contain(inline_cli, ws, incident_id, "legal,eng-lead,compliance")[0] == 0
    code, out, _ = inline_cli(ws, "postmortem", incident_id)
    assert code == 0
    rows = [line for line in out.splitlines() if " | contain | " in line]
    assert len(rows) == 3
    assert any("eng-lead" in r and "sent" in r for r in rows)
    assert any("legal" in r and "failed" in r and "Connection error" in r for r in rows)
    assert any("compliance" in r and "not configured" in r for r in rows)


@pytest.mark.slow
def test_failed_gate_messages_can_be_switched_off(restorable: Workspace,
                                                  webhook: Webhook) -> None:
    """A verdict that did not pass tells the contained agent's audiences, unless
    ``on_failed_gate = false``; a passing one tells nobody."""
    passing = open_store(restorable).latest_verdict("refund-agent")
    assert passing is not None
    failing = passing.model_copy(update={"outcome": "fail"})
    on = _configure(restorable, {"legal": [webhook.url()]})
    assert notify_failed_gate(on, "refund-agent", passing, actor=ACTOR).notifications == []
    told = notify_failed_gate(on, "refund-agent", failing, actor=ACTOR)
    assert [(n.event, n.audience, n.status) for n in told.notifications] == [
        ("gate", "legal", "sent"), ("gate", "compliance", "not_configured"),
        ("gate", "eng-lead", "not_configured")]
    config = on.root / "reinstate.toml"
    config.write_text(config.read_text().replace("\n[notify]\n",
                                                 "\n[notify]\non_failed_gate = false\n"))
    off = Workspace.find(on.root)
    assert notify_failed_gate(off, "refund-agent", failing, actor=ACTOR).notifications == []
    assert len(webhook.received) == 1


def test_notify_settings_do_not_make_a_verdict_stale(back_in_full: Workspace,
                                                     inline_cli: Cli) -> None:
    """Adding audiences to [notify] after a gate leaves its verdict current: who hears of an
    incident says nothing about the agent."""
    ws = _configure(back_in_full, {"legal": ["json://127.0.0.1:9/hook"]})
    code, out, err = inline_cli(ws, "check", "refund-agent")
    assert code == 0, out + err


def test_the_readme_notify_example_is_valid_and_apprise_reads_its_urls() -> None:
    """The README's [notify] snippet validates as reinstate.toml says, and Apprise accepts
    each of its URLs once the variables are filled in."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```toml\n(\[notify\]\n.*?)```", text, flags=re.DOTALL)
    settings = Config.model_validate(tomllib.loads(snippet)).notify
    assert set(settings.audiences()) == {"legal", "eng-lead"}
    filled = {"SMTP_USER": "oncall", "SMTP_PASSWORD": "pw",
              "SLACK_TOKEN": "xoxb-1234-1234-abc124"}
    for urls in settings.audiences().values():
        for url in urls:
            assert apprise.Apprise().add(re.sub(r"\$\{(\w+)\}", lambda m: filled[m[1]], url))


def test_without_apprise_installed_a_delivery_fails_with_the_install_hint(
        example: Workspace, webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace with [notify] audiences but no Apprise installed contains the agent and
    records each delivery as failed, naming the extra to install."""
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` raises ImportError
    ws = _configure(example, {"eng-lead": [webhook.url()]})
    done = contain(ws, _open(ws), mode="review", notify=["eng-lead"], scope="one refund",
                   actor=ACTOR)
    (delivery,) = done.notifications
    assert (delivery.status, delivery.reason) == (
        "failed", "Apprise is not installed: pip install 'reinstate[notify]'")
    assert webhook.received == [] and read_mode(ws, "refund-agent").mode == "review"


def test_a_url_apprise_cannot_read_is_a_failure_naming_its_scheme(example: Workspace) -> None:
    """A URL of a service Apprise does not know is a failed delivery naming the scheme, and
    containment goes on."""
    ws = _configure(example, {"legal": ["carrierpigeon://loft/legal"]})
    done = contain(ws, _open(ws), mode="review", notify=["legal"], scope="one refund",
                   actor=ACTOR)
    (delivery,) = done.notifications
    assert (delivery.service, delivery.status) == ("carrierpigeon", "failed")
    assert "cannot send to this carrierpigeon:// URL" in delivery.reason
    assert read_mode(ws, "refund-agent").mode == "review"


_BAD_NOTIFY = '\n[notify]\nlegal = ["notaurl at all"]\n'


@pytest.mark.slow
@pytest.mark.attack
def test_an_invalid_notify_section_never_stops_a_containment(example: Workspace,
                                                             cli: RunCli) -> None:
    """A typo in who to tell refused the emergency action: `incident open` and `contain`
    exited 2 on `$.notify.legal[0]` and the agent went on in full. Now the incident is
    opened and the agent contained and recorded; contain says the section is invalid and
    that nobody was told, and exits 2; `mode` answers suspended. What could clear the
    agent (check, restore) still refuses the configuration."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + _BAD_NOTIFY)
    opened = cli("incident", "open", "refund-agent", "--severity", "sev1", "--summary", "x",
                 cwd=example.root)
    assert opened.returncode == 0, opened.stderr
    incident_id = opened.stdout.strip()
    assert "$.notify.legal[0]" in opened.stderr and "all the same" in opened.stderr
    done = cli("contain", incident_id, "--mode", "suspended", "--notify",
               "legal,compliance,eng-lead", "--scope", "every refund today", cwd=example.root)
    err = " ".join(done.stderr.split())
    assert done.returncode == 2, err
    assert ("error: reinstate.toml: $.notify.legal[0]: expected a service URL such as "
            "mailto://user@host or json://host/hook; this one does not start with a scheme "
            "and ://") in err
    assert ("refund-agent IS contained (suspended), but [notify] in reinstate.toml is "
            "invalid, so reinstate told nobody: tell legal, compliance, eng-lead yourself"
            ) in err
    mode = cli("mode", "refund-agent", cwd=example.root)
    assert (mode.returncode, mode.stdout) == (0, "suspended\n"), mode.stderr
    assert "$.notify.legal[0]" in mode.stderr
    ws = Workspace.find(example.root, containing=True)
    contained = [e for e in open_store(ws).audit("refund-agent")
                 if e.action == "mode" and e.detail.get("incident") == incident_id]
    assert [e.detail.get("mode") for e in contained] == ["suspended"]
    incident = ws.incidents().load(incident_id)
    assert incident.phase == "contained"
    assert [(n.audience, n.status) for n in incident.notifications] == [
        ("legal", "failed"), ("compliance", "failed"), ("eng-lead", "failed")]
    assert "notaurl" not in ws.incidents().path(incident_id).read_text()
    for clearing in (("check", "refund-agent"), ("restore", "refund-agent")):
        refused = cli(*clearing, cwd=example.root)
        assert refused.returncode == 2 and "$.notify.legal[0]" in refused.stderr, clearing


@pytest.mark.slow
def test_another_invalid_section_still_refuses_a_containment(example: Workspace,
                                                             cli: RunCli) -> None:
    """Only [notify] is set aside: an invalid [containment] beside it is still exit 2
    naming its place, for contain and mode alike, and contains nothing."""
    incident_id = _open(example)
    config = example.root / "reinstate.toml"
    text = config.read_text()
    assert "target_hours = 4" in text
    text = text.replace("target_hours = 4", "target_hours = -4")
    config.write_text(text + _BAD_NOTIFY)
    for args in (("contain", incident_id, "--mode", "suspended", "--notify", "legal",
                  "--scope", "y"), ("mode", "refund-agent"),
                 ("incident", "open", "refund-agent", "--severity", "sev1", "--summary", "x")):
        refused = cli(*args, cwd=example.root)
        assert refused.returncode == 2, args
        assert "$.containment.target_hours" in refused.stderr, args
    assert refused.stdout == ""
    assert example.incidents().load(incident_id).containment is None


def test_the_python_api_contains_with_an_invalid_notify_section(example: Workspace) -> None:
    """`Workspace.find(containing=True)` sets an invalid [notify] aside: `contain` contains
    and says why nobody was told, `agent_mode` and the guard read the workspace; `restore`
    and `check` refuse it."""
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text() + _BAD_NOTIFY)
    with pytest.raises(InvalidInput, match=re.escape("$.notify.legal[0]")):
        Workspace.find(example.root)
    ws = Workspace.find(example.root, containing=True)
    done = contain(ws, _open(ws), mode="review", notify=["legal"], scope="one refund",
                   actor=ACTOR)
    assert done.notify_problem is not None and "$.notify.legal[0]" in done.notify_problem
    assert read_mode(ws, "refund-agent").mode == "review"
    # The runtime's reads answer the mode, not "suspended" for a workspace they cannot read.
    assert agent_mode("refund-agent", example.root) == "review"
    guard = Guard(example.root, "refund-agent")
    try:
        assert guard.workspace.notify_problem is not None
    finally:
        guard.close()
    for clearing in (lambda: restore(ws, "refund-agent", actor=ACTOR),
                     lambda: check(ws, "refund-agent")):
        with pytest.raises(InvalidInput, match=re.escape("$.notify.legal[0]")):
            clearing()
