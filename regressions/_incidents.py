"""The incidents folder: opening incidents with unique ids, reading them, changing them safely."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import (
    InvalidInput,
    create_exclusive,
    did_you_mean,
    dump_yaml,
    json_path,
    line_of,
    parse_model,
    parse_yaml,
    read_text,
    refuse_link,
    write_atomic,
)
from regressions._errors import UnknownIncident
from regressions._incident import INCIDENT_ID, Event, Incident, Severity, utc_now
from regressions._lifecycle import next_phase

if TYPE_CHECKING:
    from filelock import FileLock


class IncidentBook:
    """The incident files of one workspace.

    Writers of the same incident take a file lock under ``lock_dir`` and write atomically,
    so concurrent commands never lose each other's changes.
    """

    def __init__(self, directory: Path, lock_dir: Path) -> None:
        self.directory = directory
        self._lock_dir = lock_dir
        self._held: dict[str, FileLock] = {}  # locks :meth:`holding` holds, by incident id

    def path(self, incident_id: str) -> Path:
        """Where the incident's file lives."""
        return self.directory / f"{incident_id}.yaml"

    def ids(self) -> list[str]:
        """Every incident id in the folder, in number order."""
        if not self.directory.is_dir():
            return []
        found = [p.stem for p in self.directory.glob("INC-*.yaml")
                 if re.fullmatch(INCIDENT_ID, p.stem)]
        return sorted(found, key=lambda i: int(i.split("-")[1]))

    def numbers_used(self) -> list[int]:
        """Every incident number the folder still shows: its incident files, and the
        baseline folders (``INC-<n>.baseline``) left by incidents whose file is gone."""
        if not self.directory.is_dir():
            return []
        names = [p.name.removesuffix(".baseline") for p in self.directory.glob("INC-*.baseline")]
        return [int(n.split("-")[1]) for n in [*self.ids(), *names]
                if re.fullmatch(INCIDENT_ID, n)]

    def open(
        self,
        *,
        agent: str,
        summary: str,
        severity: Severity,
        detected_at: datetime,
        actor: str,
        past: int = 0,
    ) -> Incident:
        """Open a new incident with the next free id; safe against concurrent openers.

        The number is past every one the folder shows (:meth:`numbers_used`) and past
        ``past``, the highest one named elsewhere (regression cases, the audit log): an id
        is never given out again, so nothing recorded of a deleted incident (its cases,
        its containment and restore entries, a verdict's verifications of its changes)
        attaches to a new one.
        """
        now = utc_now()
        number = max([past, *self.numbers_used()]) + 1
        while True:
            incident = Incident(
                id=f"INC-{number}",
                agent=agent,
                summary=summary,
                severity=severity,
                detected_at=detected_at,
                opened_by=actor,
                history=[Event(at=now, actor=actor, action="open", detail=summary)],
            )
            if create_exclusive(self.path(incident.id), dump_yaml(incident)):
                return incident
            number += 1

    def load(self, incident_id: str) -> Incident:
        """Read and validate one incident."""
        if not re.fullmatch(INCIDENT_ID, incident_id):
            raise InvalidInput(None, "", f"'{incident_id}' is not an incident id: expected INC-<n>")
        path = self.path(incident_id)
        if not path.exists():
            known = self.ids()
            hint = did_you_mean(incident_id, known) or (
                f" (known: {', '.join(known)})" if known else " (there are no incidents yet)"
            )
            raise UnknownIncident(incident_id, known, hint)
        return self._read(path)

    def _read(self, path: Path) -> Incident:
        text = read_text(refuse_link(path))  # every change reads first: a link is never written
        return self.parse(path, text)

    def parse(self, path: Path, text: str) -> Incident:
        """The incident ``text`` holds, checked as every read checks it (``path`` names it:
        its file name must be the incident's id)."""
        incident = parse_model(Incident, parse_yaml(text, path), path, text)
        if incident.id != path.stem:
            raise InvalidInput(
                path, "$.id", f"expected '{path.stem}' to match the file name, got '{incident.id}'",
                line=line_of(text, ["id"]),
            )
        problems = incident.reference_problems()
        if problems:
            loc, message = problems[0]
            raise InvalidInput(path, json_path(loc), message, line=line_of(text, loc))
        return incident

    def all(self, agent: str | None = None) -> list[Incident]:
        """Every incident, or every incident of one agent."""
        incidents = [self._read(self.path(i)) for i in self.ids()]
        return [i for i in incidents if agent is None or i.agent == agent]

    def _lock(self, incident_id: str) -> FileLock:
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # writers only: readers never lock

        return FileLock(self._lock_dir / f"{incident_id}.lock", timeout=30)

    @contextmanager
    def holding(self, incident_ids: Iterable[str]) -> Iterator[None]:
        """Keep every other writer off these incidents until the block ends, so a decision
        made on their records is written before anyone changes them; this book's own
        :meth:`change` of them goes on meanwhile. Ids are those of incident files (checked
        as :meth:`load` checks them), locked in number order: two holders never deadlock."""
        # Loaded first: a malformed or unknown id must not name a lock file.
        ids = sorted({self.load(i).id for i in incident_ids}, key=lambda i: int(i[4:]))
        with ExitStack() as stack:
            try:
                for incident_id in ids:
                    lock = self._lock(incident_id)
                    stack.enter_context(lock)
                    self._held[incident_id] = lock
                yield
            finally:
                for incident_id in ids:
                    self._held.pop(incident_id, None)

    @contextmanager
    def change(
        self, incident_id: str, *, action: str, actor: str, detail: str = "",
        case: str | None = None, tags: Sequence[str] | None = None,
    ) -> Iterator[Incident]:
        """Change an incident under its lock; it is written only if the block succeeds.

        ``action`` must be allowed in the incident's phase (see the lifecycle table), and
        is appended to the incident's history with the actor and the time (and ``case``,
        the regression case a capture recorded, with the ``tags`` it was captured with).
        """
        self.load(incident_id)  # a malformed or unknown id must not name a lock file
        # A lock :meth:`holding` holds is taken again (it is reentrant), never waited for.
        with self._held.get(incident_id) or self._lock(incident_id):
            incident = self.load(incident_id)
            next_phase(incident.id, action, incident.phase)
            working = incident.model_copy(deep=True)
            yield working
            working.history.append(Event(at=utc_now(), actor=actor, action=action, detail=detail,
                                         case=case, tags=list(tags) if tags else None))
            checked = Incident.model_validate(working.model_dump())
            problems = checked.reference_problems()
            if problems:
                loc, message = problems[0]
                raise InvalidInput(self.path(incident_id), json_path(loc), message)
            write_atomic(self.path(incident_id), dump_yaml(checked))
