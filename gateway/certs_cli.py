"""``asgigw certs show|issue|trust|untrust``: the local development CA from the command line.

``gateway.cli`` routes ``asgigw certs ...`` here; ``asgigw APP`` stays the main form.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from gateway import devcerts, platform, trust_store

CA_DIR_HELP = "Folder of the local CA (default: the user data folder, or $ASGIGW_CA_DIR)."


def _fail(message: str) -> NoReturn:
    click.echo(f"asgigw certs: error: {message}", err=True)
    sys.exit(2)


def _authority(ca_dir: str | None) -> devcerts.CertificateAuthority:
    folder = devcerts.ca_folder(ca_dir)
    try:
        return devcerts.CertificateAuthority.load_or_create(folder)
    except devcerts.DevCertError as exc:
        _fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def certs() -> None:
    """Manage the local development CA and its certificates."""


@certs.command()
@click.option("--ca-dir", envvar=devcerts.ENV_CA_DIR, help=CA_DIR_HELP)
def show(ca_dir: str | None) -> None:
    """Print where the CA and development certificate are, their fingerprints and expiry."""
    for line in devcerts.describe(devcerts.ca_folder(ca_dir)):
        click.echo(line)


@certs.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--out", "out_dir", default="certs", show_default=True, help="Folder to write NAME.pem and NAME-key.pem.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 825), help="Validity in days.")
@click.option("--ca-dir", envvar=devcerts.ENV_CA_DIR, help=CA_DIR_HELP)
def issue(names: tuple[str, ...], out_dir: str, days: int, ca_dir: str | None) -> None:
    """Issue a certificate for NAMES (host names or IP addresses) signed by the local CA.

    The certificate file holds the full chain (leaf, then CA), for use with other tools or
    with asgigw --cert/--key.
    """
    authority = _authority(ca_dir)
    try:
        cert_path, key_path = devcerts.issue_files(list(names), Path(out_dir), authority, days=days)
    except devcerts.DevCertError as exc:
        _fail(str(exc))
    click.echo(f"certificate: {cert_path} (for {', '.join(names)}, valid {days} days)")
    click.echo(f"key:         {key_path}")
    click.echo(f"issued by:   {authority.cert_path}")


def _trust_command(ca_dir: str | None, add: bool, dry_run: bool) -> None:
    folder = devcerts.ca_folder(ca_dir)
    path = folder / devcerts.CA_CERT_FILE
    if add:
        authority = _authority(ca_dir)  # trusting creates the CA if this is the first run
        path = authority.cert_path
    try:
        ca = trust_store.CAFile.read(path)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the local CA {path}: {getattr(exc, 'strerror', None) or exc}")
    steps = trust_store.plan(ca, sys.platform, add)
    verb = "trust" if add else "untrust"
    if not steps:
        _fail(f"no trust store tool found (update-ca-certificates, update-ca-trust or trust); add {path} by hand")
    click.echo(f"{verb}: {path} (SHA-1 {ca.sha1})")
    if dry_run:
        for step in steps:
            click.echo(f"would run: {step.shell()}")
        return
    lines, ok = trust_store.execute(steps, elevate="" if platform.IS_WINDOWS else "sudo ")
    for line in lines:
        click.echo(line)
    if not ok:
        sys.exit(1)


@certs.command()
@click.option("--ca-dir", envvar=devcerts.ENV_CA_DIR, help=CA_DIR_HELP)
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
def trust(ca_dir: str | None, dry_run: bool) -> None:
    """Install the local CA into the OS trust store (and Firefox/Chrome NSS databases)."""
    _trust_command(ca_dir, True, dry_run)


@certs.command()
@click.option("--ca-dir", envvar=devcerts.ENV_CA_DIR, help=CA_DIR_HELP)
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
def untrust(ca_dir: str | None, dry_run: bool) -> None:
    """Remove the local CA from the trust stores that ``trust`` added it to."""
    _trust_command(ca_dir, False, dry_run)
