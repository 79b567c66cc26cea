"""A throwaway PostgreSQL cluster for the tests and the store benchmark.

``initdb`` and ``pg_ctl`` make and start a cluster in a temporary folder, on a free TCP
port of 127.0.0.1 with its socket in that folder, and stop and delete it at the end.
PostgreSQL refuses to run as root, so as root the cluster is made and run by ``nobody``
(``runuser``), which owns the folder. pytest-postgresql's process fixture was not used: it
runs ``initdb`` as the current user, which as root (CI here) fails.

Binaries are found in ``$REINSTATE_PG_BINDIR`` when it is set (there only), else on PATH,
else in Debian's ``/usr/lib/postgresql/<version>/bin``. The superuser ``postgres``
connects without a password; the role ``reinstate_pw`` (password ``PASSWORD``) must give
its password, so a test can show that a password from the environment is used (and never
printed).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD_ROLE = "reinstate_pw"
PASSWORD = "s3cret/with@odd:chars"


def bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    given = os.environ.get("REINSTATE_PG_BINDIR")
    if given:  # that folder or nothing
        return Path(given) if (Path(given) / "initdb").is_file() else None
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running cluster: URLs of fresh databases on it."""

    bindir: Path
    folder: Path
    port: int
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """A URL of ``database`` on this cluster."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database (owned by the password role too), and its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {PASSWORD_ROLE}")
        return self.url(name)


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


def _run(argv: list[str]) -> None:
    done = subprocess.run([*_as_postgres_user(), *argv], capture_output=True, text=True,
                          check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")


@contextlib.contextmanager
def cluster(binaries: Path) -> Iterator[Cluster]:
    """A cluster started for the block, stopped and deleted after it."""
    # As root the folder must be reachable by nobody: not under a private TMPDIR.
    folder = Path(tempfile.mkdtemp(prefix="reinstate-pg-",
                                   dir="/tmp" if os.geteuid() == 0 else None))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody", "nogroup")
    port = _free_port()
    started = False
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
              "-E", "UTF8", "--no-sync", "--locale=C"])
        # The password role must give its password over TCP; everyone else is trusted.
        hba = data / "pg_hba.conf"
        _run(["sh", "-c", f"printf 'host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\\n"
                          f"host all all 127.0.0.1/32 trust\\nlocal all all trust\\n' > {hba}"])
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
              "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off "
                    f"-c max_connections=200", "start"])
        started = True
        found = Cluster(binaries, folder, port)
        import psycopg

        with psycopg.connect(found.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        yield found
    finally:
        if started:
            with contextlib.suppress(RuntimeError):
                _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                      "stop"])
        shutil.rmtree(folder, ignore_errors=True)
