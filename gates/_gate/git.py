"""Reading files as they were at a git ref, through the ``git`` command (never a shell).

Errors are one line with exit 2: no git, not a repository, an unknown ref (with the fix
for a shallow clone, where the ref was simply never fetched).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from evalsuite import InvalidInput

# A ref is given on the command line: "--against REF" is the place an error names.
PLACE = "--against"


def _run(args: list[str], cwd: Path,
         stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    # No prompts (a credential helper must never wait for a person in CI), no pager, and
    # git's own messages in English so they read the same in every log.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True,
                              env=env, check=False)
    except FileNotFoundError:
        raise InvalidInput(None, PLACE, "expected the git command on PATH to read the ref "
                                        "(install git, or run without --against)") from None


def _first_line(output: bytes) -> str:
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return lines[0].removeprefix("fatal: ") if lines else "no message"


@dataclass(frozen=True)
class Blob:
    """One file in a commit's tree."""

    path: str
    """Its path from the repository's top, with ``/``."""
    oid: str
    """Its object id."""


@dataclass(frozen=True)
class GitRepo:
    """The git repository a folder lies in."""

    top: Path
    """The repository's top folder (its work tree)."""

    @classmethod
    def of(cls, folder: Path) -> GitRepo:
        """The repository holding ``folder``; a clean error when there is none."""
        done = _run(["rev-parse", "--show-toplevel"], folder)
        if done.returncode != 0:
            raise InvalidInput(None, PLACE, f"expected {folder} to be inside a git repository "
                                            f"({_first_line(done.stderr)})")
        return cls(Path(done.stdout.decode().strip()).resolve())

    def path_of(self, path: Path) -> str:
        """``path`` (in the work tree) as git names it: from the top, with ``/``."""
        relative = path.resolve().relative_to(self.top).as_posix()
        return "" if relative == "." else relative

    def commit(self, ref: str) -> str:
        """The commit ``ref`` names; an unknown ref is an error that says how to fetch it."""
        if not ref or ref.startswith("-"):
            raise InvalidInput(None, PLACE, f"expected a git ref such as origin/main, got "
                                            f"'{ref}'")
        done = _run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], self.top)
        if done.returncode == 0:
            return done.stdout.decode().strip()
        shallow = _run(["rev-parse", "--is-shallow-repository"], self.top)
        hint = ("; this is a shallow clone: fetch the history (actions/checkout with "
                "`fetch-depth: 0`, or `git fetch origin main`)"
                if shallow.stdout.decode().strip() == "true"
                else "; fetch it first (e.g. `git fetch origin main`)")
        raise InvalidInput(None, PLACE, f"unknown git ref '{ref}': no such commit in "
                                        f"{self.top}{hint}")

    def files(self, commit: str, folder: str) -> list[Blob]:
        """Every regular file under ``folder`` (from the top) at ``commit``, recursively."""
        done = _run(["ls-tree", "-r", "-z", "--full-tree", commit, "--", folder or "."],
                    self.top)
        if done.returncode != 0:
            raise InvalidInput(None, PLACE, f"cannot list {folder or '.'} at {commit[:12]} "
                                            f"({_first_line(done.stderr)})")
        found = []
        for record in done.stdout.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split()
            # Regular files only: a link or a submodule is not a case, incident or baseline.
            if kind == "blob" and mode in ("100644", "100755"):
                found.append(Blob(path.decode("utf-8", "surrogateescape"), oid))
        return found

    def read(self, blobs: list[Blob]) -> dict[str, bytes]:
        """The content of each blob, by path, in one ``git cat-file --batch``."""
        if not blobs:
            return {}
        done = _run(["cat-file", "--batch"], self.top,
                    stdin="".join(f"{b.oid}\n" for b in blobs).encode())
        if done.returncode != 0:
            raise InvalidInput(None, PLACE, f"cannot read files from git "
                                            f"({_first_line(done.stderr)})")
        out, at, contents = done.stdout, 0, {}
        for blob in blobs:
            end = out.index(b"\n", at)
            header = out[at:end].decode().split()
            if len(header) != 3:
                raise InvalidInput(None, PLACE, f"cannot read {blob.path} from git "
                                                f"({' '.join(header)})")
            size = int(header[2])
            contents[blob.path] = out[end + 1:end + 1 + size]
            at = end + 1 + size + 1  # the content is followed by a newline
        return contents
