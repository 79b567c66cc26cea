"""``reinstate keygen --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from gates._cli._common import ctx
from gates._store.attestation import SIGNING_KEY_ENV, generate_key_pair


@click.command("keygen")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Folder to write reinstate-signing.key (mode 0600) and "
                   "reinstate-signing.pub into; existing keys are never overwritten.")
def command(out: Path) -> int:
    """Make an Ed25519 key pair for signed verdicts.

    The private key belongs in a CI secret named REINSTATE_SIGNING_KEY and nowhere else;
    the public key is committed to the workspace and named in reinstate.toml.
    """
    c = ctx()
    private, public = generate_key_pair(out)
    c.out.print(f"wrote {private} (private, mode 0600) and {public} (public)",
                highlight=False, markup=False)
    lines = [
        "",
        f"1. Store the private key as the CI secret {SIGNING_KEY_ENV}, then delete the file:",
        f"     gh secret set {SIGNING_KEY_ENV} < {private}     # GitHub Actions",
        f"     (GitLab: Settings > CI/CD > Variables, {SIGNING_KEY_ENV}, masked, protected)",
        f"     shred -u {private}",
        "   Give it only to the gate job; the gate removes it from its environment before",
        "   any agent starts.",
        "2. Commit the public key to the workspace and name it in reinstate.toml:",
        "     [signing]",
        f'     public_key = "{public.name}"',
        "   check and restore then accept only verdicts signed with the private key; a",
        "   deploy job runs `reinstate check AGENT --verdict verdict.intoto.json "
        f"--public-key {public.name}`.",
    ]
    for line in lines:
        c.out.print(line, highlight=False, markup=False)
    return 0
