"""Sessions: tests, lint and types by default (what CI runs); demo, build and the rest on
request."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "types"]
# A local rerun should not reinstall everything; CI starts from a clean clone anyway.
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

# reinstate/ holds only the integrations (reinstate.openfeature).
PACKAGES = ["evalsuite", "regressions", "gates", "reinstate"]


def _debian_packages(session: nox.Session, missing: dict[str, str]) -> None:
    """Install the Debian packages the tests use for real that are missing (each with what
    fails without it), in one apt run.

    A fresh machine of this project's kind (Debian, as root) needs nothing by hand; anywhere
    else the session says what is missing and the tests say what to install.
    """
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        for note in missing.values():
            session.warn(note)
        return
    environment = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=environment)
    session.run("apt-get", "install", "-y", "-qq", *missing, external=True, env=environment)


def _missing_postgresql() -> dict[str, str]:
    """PostgreSQL, for the store's tests and benchmark against a real server (Debian keeps
    ``initdb`` in /usr/lib/postgresql/*/bin), when it is missing."""
    if (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
            or os.environ.get("REINSTATE_PG_BINDIR")):
        return {}
    return {"postgresql": "PostgreSQL is missing: install it (Debian: apt-get install "
                          "postgresql) or set REINSTATE_PG_BINDIR; the PostgreSQL store "
                          "tests will fail in CI and be skipped elsewhere"}


def _system_packages(session: nox.Session) -> None:
    """Chromium (the report is tested in it, headless), PostgreSQL (PostgresStore is tested
    against a real server the tests start) and bubblewrap (the agent sandbox is tested in
    it), the missing ones installed together."""
    missing = _missing_postgresql()
    if not (shutil.which("chromium") or shutil.which("chromium-browser")
            or os.environ.get("REINSTATE_CHROMIUM")):
        missing["chromium"] = ("Chromium is missing: install it (Debian: apt-get install "
                               "chromium) or set REINSTATE_CHROMIUM; the report tests will "
                               "fail without it")
    if not shutil.which("bwrap"):
        missing["bubblewrap"] = ("bubblewrap is missing: install it (Debian: apt-get install "
                                 "bubblewrap); the bubblewrap sandbox tests are skipped "
                                 "without it")
    _debian_packages(session, missing)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, in one pytest-xdist worker per core; ``-- -m "not slow"`` is the
    quick tier, and ``-- -n 0`` runs it in one process.

    ``loadgroup`` keeps a module marked ``xdist_group`` (one whose module fixture runs
    gates or starts Chromium) in one worker, so that work is done once; the rest is
    spread test by test. The tallies at the end count every worker's reports.
    """
    _system_packages(session)
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", "--dist", "loadgroup", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the packages, the tests and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *PACKAGES, "reinstate_pytest.py", "tests", "benchmarks",
                "noxfile.py")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over the packages, with every optional extra they import."""
    session.install("-e", ".[openfeature,postgres,notify,ray,otel,mcp,zstd]", "mypy>=1.10",
                    "types-PyYAML>=6.0.12", "types-jsonschema>=4.21",
                    "pytest>=8.0")  # gates/pytest_plugin.py is typed against pytest
    session.run("mypy", *PACKAGES, "reinstate_pytest.py")


@nox.session
def demo(session: nox.Session) -> None:
    """The whole story on the bundled example workspace (pass a folder to keep it there)."""
    session.install(".")
    folder = session.posargs[0] if session.posargs else str(
        Path(tempfile.mkdtemp(prefix="reinstate-demo-")) / "workspace"
    )
    session.run("reinstate", "demo", "--dir", folder)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in benchmarks/, each reporting ratios against a same-run baseline."""
    # bench_store.py follows mode changes on a throwaway PostgreSQL.
    _debian_packages(session, _missing_postgresql())
    # bench_cli.py times pytest beside the CLI; bench_ray.py starts a local Ray cluster.
    session.install(".[postgres,ray]", "pytest")
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def schemas(session: nox.Session) -> None:
    """Regenerate schemas/ from the models (a test fails while they differ)."""
    session.install("-e", ".")
    session.run("python", "-c", "from pathlib import Path; from gates import write_schemas; "
                "write_schemas(Path('schemas'))")


# What `reinstate demo` and `reinstate init` read from the installed package besides code:
# the example workspace with its fix, and the report templates.
PACKAGE_DATA = ["gates/_example", "gates/_reports/templates"]


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/ and check them, so publishing is one step.

    ``twine check`` reads their metadata as an index would; the wheel must hold every file
    of the example workspace and the report templates; installed alone into a fresh
    virtual environment it must answer ``reinstate --version`` and run ``reinstate demo``
    to the end.
    """
    session.install("build>=1.2", "twine>=5.1")
    dist = Path("dist")
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    built = sorted(dist.iterdir())
    session.run("twine", "check", "--strict", *map(str, built))
    wheel = next(f for f in built if f.suffix == ".whl")
    tracked = subprocess.run(["git", "ls-files", *PACKAGE_DATA], capture_output=True,
                             text=True, check=True).stdout.split()
    with zipfile.ZipFile(wheel) as archive:
        missing = sorted(set(tracked) - set(archive.namelist()))
    if not tracked or missing:
        session.error(f"{wheel.name} lacks files the demo needs: "
                      f"{', '.join(missing) or PACKAGE_DATA}")
    scratch = Path(tempfile.mkdtemp(prefix="reinstate-wheel-"))
    venv = scratch / "venv"
    session.run("python", "-m", "venv", str(venv))
    binary = venv / ("Scripts" if os.name == "nt" else "bin")
    session.run(str(binary / "python"), "-m", "pip", "install", "--quiet", str(wheel),
                external=True)
    session.run(str(binary / "reinstate"), "--version", external=True)
    session.run(str(binary / "reinstate"), "demo", "--dir", str(scratch / "demo"),
                external=True)
    session.log(f"built and checked: {', '.join(f.name for f in built)}")
