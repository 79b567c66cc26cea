"""Notifications: tell each audience of a containment, a failed gate and a restore.

Messages go through Apprise (the ``reinstate[notify]`` extra) to the service URLs that
``[notify]`` in reinstate.toml lists per audience. Delivery never holds up the response:
it starts only after the mode change is committed, every delivery runs in a thread of its
own with its own timeout, and the command waits at most ``[notify] total_s`` for all of
them together (one still going then is recorded as failed and left behind). Each delivery
is recorded in the incident file and as an audit entry by its URL's scheme, never by the
URL, which may hold a secret.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from evalsuite import ReinstateError
from gates._config import NotifySettings, Workspace
from gates._store.access import open_store, standing
from gates._store.backends import StateStore
from gates._verdict.verdict import Verdict
from regressions import Incident, Notification, NotifyEvent, utc_now

# ``${NAME}`` in a URL: an environment variable, read when the message is sent.
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MASK = "***"
INSTALL_HINT = "pip install 'reinstate[notify]'"


@dataclass(frozen=True)
class Message:
    """What every audience of one event is told: a title and a Markdown body."""

    title: str
    body: str


@dataclass
class Told:
    """The deliveries of one command, and what the person running it must hear of them."""

    notifications: list[Notification] = field(default_factory=list)
    """Each delivery, in the order the audiences were named, as recorded."""
    warnings: list[str] = field(default_factory=list)
    """Deliveries that did not go, and deliveries that could not be recorded."""
    configured: bool = True
    """False when ``[notify]`` names no audience at all: nothing was sent or recorded."""
    problem: str | None = None
    """Why nothing was sent: ``[notify]`` is invalid (file, place and what was expected);
    each audience is recorded as failed."""


class _Unset(Exception):
    """A ``${NAME}`` in a URL whose variable is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def expand(url: str, environ: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """``url`` with each ``${NAME}`` replaced from the environment, and the values put in
    (secrets, to be masked wherever the URL's fate is told).

    Raises:
        _Unset: a variable is not set (or empty).
    """
    env = os.environ if environ is None else environ
    values: list[str] = []

    def value(match: re.Match[str]) -> str:
        found = env.get(match.group(1))
        if not found:
            raise _Unset(match.group(1))
        values.append(found)
        return found

    return _VARIABLE.sub(value, url), values


def service_of(url: str) -> str:
    """The scheme of a service URL (``mailto``, ``json``, ``slack``): what is recorded."""
    return url.split("://", 1)[0].lower()


def _with_timeouts(url: str, seconds: float) -> str:
    """The URL with Apprise's connect and read timeouts (``cto``/``rto``) set to the
    delivery's bound, unless the URL sets its own: a receiver that hangs then releases
    the delivery's thread, and the process can exit."""
    query = urlsplit(url).query
    keys = {part.split("=", 1)[0] for part in query.split("&") if part}
    extra = "&".join(f"{key}={seconds:g}" for key in ("cto", "rto") if key not in keys)
    if not extra:
        return url
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def _mask(text: str, secrets: Sequence[str], short: Sequence[str] = ()) -> str:
    """``text`` with every secret replaced, longest first and in any case (Apprise may
    lower a host's), and every ``short`` piece where it stands alone."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = re.sub(re.escape(secret), _MASK, text, flags=re.IGNORECASE)
    for piece in sorted({p for p in short if p}, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", _MASK, text,
                      flags=re.IGNORECASE)
    return text


# A secret may hold a URL's delimiters ('@', '/', ':'): Apprise then reads part of it as the
# host or the path and names that part in its failure. Each piece is masked too: one of at
# least this length wherever it appears; a shorter one (the 'Zq7' of 'pa55w0rd@Zq7', which
# Apprise names as the host) only where it stands alone, so that masking it does not eat
# every word it is a part of.
_PIECES = re.compile(r"[@/:?#&=;,\s]+")
_MIN_PIECE = 4


def _secrets_of(url: str, expanded: str,
                values: Sequence[str]) -> tuple[list[str], list[str]]:
    """Everything that must never appear in a record: the URLs whole, the values of their
    variables and any user and password in them, and every piece of those between URL
    delimiters; and the pieces too short to mask inside other words."""
    secret = list(values)
    try:
        # The user too: many services take a token there, and one holding an '@' is read
        # by Apprise partly as the host ('tok@en@host' is sent to 'en').
        parts = urlsplit(expanded)
        userinfo = [parts.username, parts.password]
    except ValueError:  # a port that is not a number: Apprise will say so
        userinfo = []
    secret += [text for part in userinfo if part for text in (part, unquote(part))]
    pieces = [piece for value in secret for piece in _PIECES.split(value) if piece]
    return ([url, expanded, *secret, *(p for p in pieces if len(p) >= _MIN_PIECE)],
            [p for p in pieces if len(p) < _MIN_PIECE])


def _send(event: NotifyEvent, audience: str, url: str, message: Message,
          timeout_s: float) -> Notification:
    """One delivery, whatever happens: a plugin's own failure is a failed delivery."""
    service = service_of(url)

    def failed(reason: str) -> Notification:
        return Notification(event=event, audience=audience, service=service,
                            status="failed", reason=reason, at=utc_now())

    try:
        expanded, values = expand(url)
    except _Unset as unset:
        return failed(f"environment variable {unset.name} is not set")
    secrets, short = _secrets_of(url, expanded, values)
    try:
        import apprise  # the optional extra: imported only when there is something to send
    except ImportError:
        return failed(f"Apprise is not installed: {INSTALL_HINT}")
    try:
        sender = apprise.Apprise()
        if not sender.add(_with_timeouts(expanded, timeout_s)):
            return failed(f"Apprise cannot send to this {service}:// URL as written "
                          f"(see Apprise's page for {service})")
        result = sender.notify(body=message.body, title=message.title,
                               body_format=apprise.NotifyFormat.MARKDOWN, timeout=timeout_s)
        if result:
            return Notification(event=event, audience=audience, service=service,
                                status="sent", at=utc_now())
        said = list(dict.fromkeys(entry.message for entry in result.logs()
                                  if entry.level in ("WARNING", "ERROR", "CRITICAL")))
        reason = "; ".join(said) or f"the service did not accept it ({result.status.name})"
        return failed(_mask(reason, secrets, short))
    except Exception as exc:  # a notification must never take the response down with it
        return failed(_mask(f"{type(exc).__name__}: {exc}", secrets, short))


class _Delivery:
    """One delivery in flight; its outcome is settled once, by its thread or by the bound."""

    def __init__(self, audience: str, url: str) -> None:
        self.audience = audience
        self.url = url
        self.outcome: Notification | None = None
        self._lock = threading.Lock()

    def settle(self, outcome: Notification) -> None:
        with self._lock:
            if self.outcome is None:
                self.outcome = outcome


def deliver(settings: NotifySettings, event: NotifyEvent, audiences: Sequence[str],
            message: Message) -> list[Notification]:
    """Send ``message`` to every service of every audience at once, within the bounds.

    An audience without a service is recorded as ``not_configured``; a delivery still
    going when ``total_s`` has passed is recorded as failed and left to finish (or time
    out) on its own, so the caller is never held longer.
    """
    configured = settings.audiences()
    slots: list[Notification | _Delivery] = []  # in the order the audiences were named
    for audience in dict.fromkeys(audiences):
        urls = configured.get(audience)
        if not urls:
            slots.append(Notification(
                event=event, audience=audience, status="not_configured", at=utc_now(),
                reason=f"no service for '{audience}' in [notify] of reinstate.toml"))
        slots += [_Delivery(audience, url) for url in urls or ()]
    jobs = [slot for slot in slots if isinstance(slot, _Delivery)]
    deadline = time.monotonic() + settings.total_s
    threads = []
    for job in jobs:
        def work(job: _Delivery = job) -> None:
            job.settle(_send(event, job.audience, job.url, message, settings.timeout_s))
        # Daemon threads: one stuck past the bound must not keep the process alive.
        thread = threading.Thread(target=work, name=f"notify-{job.audience}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for job in jobs:
        job.settle(Notification(
            event=event, audience=job.audience, service=service_of(job.url), status="failed",
            reason=f"no answer within {settings.total_s:g} s ([notify] total_s)", at=utc_now()))
    done: list[Notification] = []
    for slot in slots:
        outcome = slot if isinstance(slot, Notification) else slot.outcome
        assert outcome is not None  # every job was settled just above
        done.append(outcome)
    return done


def warnings_of(notifications: Sequence[Notification]) -> list[str]:
    """What the person running the command must hear: every delivery that did not go."""
    said = []
    for n in notifications:
        if n.status == "not_configured":
            said.append(f"{n.audience} was not notified: no service for it in [notify] of "
                        f"reinstate.toml; tell them yourself")
        elif n.status == "failed":
            said.append(f"{n.audience} was not notified by {n.service}: {n.reason}")
    return said


def _deliveries_line(event: NotifyEvent, notifications: Sequence[Notification]) -> str:
    parts = [f"{n.audience} {n.status.replace('_', ' ')}"
             + (f" ({n.service})" if n.service else "") for n in notifications]
    return f"{event}: {'; '.join(parts)}"


def _record(workspace: Workspace, incident: Incident, event: NotifyEvent,
            notifications: list[Notification], *, actor: str,
            store: StateStore | None) -> list[str]:
    """Write the deliveries into the incident file and the audit log; a failure to record
    is a warning, never a failed containment or restore."""
    if not notifications:
        return []
    try:
        with workspace.incidents().change(incident.id, action="notify", actor=actor,
                                          detail=_deliveries_line(event, notifications)
                                          ) as record:
            record.notifications = [*record.notifications, *notifications]
        log = store or open_store(workspace)
        for n in notifications:
            log.append(actor=actor, action="notify", agent=incident.agent,
                       reason=f"{event} {incident.id}: {n.audience} {n.status}",
                       detail={"incident": incident.id, "event": event,
                               "audience": n.audience, "service": n.service,
                               "status": n.status, "reason": n.reason,
                               "at": n.at.isoformat()})
    except ReinstateError as exc:
        return [f"the deliveries of {incident.id} could not be recorded: {exc}"]
    return []


def notify_incident(workspace: Workspace, incident: Incident, event: NotifyEvent,
                    message: Message, *, actor: str,
                    store: StateStore | None = None) -> Told:
    """Tell the audiences notified at ``incident``'s containment of ``event``, and record
    each delivery in the incident file and the audit log."""
    settings = workspace.config.notify
    problem = workspace.notify_problem
    if problem is not None and incident.containment is not None:
        # The section was set aside so that the containment went ahead (Workspace.find):
        # nobody is told, and the incident says so for every audience. The reason names
        # the place only: the message quotes the value, which may hold a secret.
        failed = [Notification(event=event, audience=audience, status="failed",
                               reason=f"[notify] of reinstate.toml is invalid at "
                                      f"{problem.place}: nothing was sent", at=utc_now())
                  for audience in dict.fromkeys(incident.containment.notified)]
        return Told(notifications=failed, problem=str(problem),
                    warnings=_record(workspace, incident, event, failed, actor=actor,
                                     store=store))
    if not settings.audiences() or incident.containment is None:
        return Told(configured=bool(settings.audiences()))
    sent = deliver(settings, event, incident.containment.notified, message)
    warnings = warnings_of(sent) + _record(workspace, incident, event, sent, actor=actor,
                                           store=store)
    return Told(notifications=sent, warnings=warnings)


def notify_containment(workspace: Workspace, incident_id: str, *, actor: str,
                       store: StateStore | None = None) -> Told:
    """Tell everyone named at containment that ``incident_id``'s agent is contained."""
    incident = workspace.incidents().load(incident_id)
    return notify_incident(workspace, incident, "contain", containment_message(incident),
                           actor=actor, store=store)


def notify_failed_gate(workspace: Workspace, agent: str, verdict: Verdict, *, actor: str,
                       store: StateStore | None = None) -> Told:
    """Tell the audiences of every incident holding ``agent`` contained that its gate did
    not pass; nothing when it passed or when no incident holds it."""
    if verdict or not workspace.config.notify.on_failed_gate:
        return Told()
    told = Told()
    try:
        holding = standing(workspace, agent, store or open_store(workspace)).holding
    except ReinstateError as exc:  # the gate's own outcome stands; this only cannot tell
        return Told(warnings=[f"nobody was told of the {verdict.outcome} gate: {exc}"])
    for incident in holding:
        one = notify_incident(workspace, incident, "gate", gate_message(incident, verdict),
                              actor=actor, store=store)
        told.notifications += one.notifications
        told.warnings += one.warnings
        told.configured = one.configured
    return told


def notify_restore(workspace: Workspace, incident_ids: Sequence[str], *, actor: str,
                   store: StateStore | None = None) -> Told:
    """Tell the audiences of each restored incident that its agent is back in full
    operation."""
    told = Told()
    for incident_id in incident_ids:
        incident = workspace.incidents().load(incident_id)
        one = notify_incident(workspace, incident, "restore", restore_message(incident),
                              actor=actor, store=store)
        told.notifications += one.notifications
        told.warnings += one.warnings
        told.configured = one.configured
    return told


def _facts(incident: Incident, mode: str = "Mode") -> list[str]:
    containment = incident.containment
    lines = [f"- **Incident:** {incident.id} ({incident.severity})",
             f"- **Agent:** {incident.agent}",
             f"- **What happened:** {incident.summary}"]
    if containment is not None:
        lines += [f"- **{mode}:** {containment.mode} since "
                  f"{containment.contained_at:%Y-%m-%d %H:%M} UTC "
                  f"(contained by {containment.contained_by})",
                  f"- **Scope of harm:** {containment.scope}"]
    return lines


def containment_message(incident: Incident) -> Message:
    """What the audiences hear when the incident's agent is contained."""
    mode = incident.containment.mode if incident.containment else "contained"
    doing = ("every output goes to a person before it takes effect" if mode == "review"
             else "the agent is stopped")
    body = "\n".join([
        f"**{incident.agent} is contained ({mode}): {doing}.**", "", *_facts(incident), "",
        "**What happens next:** the team investigates (`reinstate investigate "
        f"{incident.id}`), records the root cause at each control layer and the control "
        f"changes, and {incident.agent} returns to full operation only when a gate verifies "
        "every change. Until then, treat its past actions in the scope above as suspect.",
    ])
    return Message(title=f"[{incident.severity}] {incident.id}: {incident.agent} contained "
                         f"({mode})", body=body)


def gate_message(incident: Incident, verdict: Verdict) -> Message:
    """What the audiences hear when the contained agent's gate does not pass."""
    failing = [c.name for c in verdict.checks if c.outcome != "pass"]
    body = "\n".join([
        f"**The gate of {incident.agent} did not pass ({verdict.outcome}): it stays "
        f"contained.**", "", *_facts(incident),
        f"- **Checks not passing:** {', '.join(failing) or 'none recorded'}", "",
        f"**What happens next:** the team fixes what the checks found and runs "
        f"`reinstate gate {incident.agent}` again; nothing changes for {incident.agent} "
        f"until a gate passes.",
    ])
    return Message(title=f"[{incident.severity}] {incident.id}: gate of {incident.agent} "
                         f"{verdict.outcome}", body=body)


def restore_message(incident: Incident) -> Message:
    """What the audiences hear when the incident's agent returns to full operation."""
    review = (f"hold the post-incident review on {incident.post_incident_review.isoformat()}"
              if incident.post_incident_review else "schedule the post-incident review")
    body = "\n".join([
        f"**{incident.agent} is back in full operation**: a current, passing gate verified "
        f"every control change.", "", *_facts(incident, "Was contained"), "",
        f"**What happens next:** {review}, then close {incident.id} "
        f"(`reinstate postmortem {incident.id}` writes it up).",
    ])
    return Message(title=f"[{incident.severity}] {incident.id}: {incident.agent} restored "
                         f"to full operation", body=body)
