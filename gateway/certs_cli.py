"""``asgigw certs show|issue|trust|untrust``: the local development CA from the command line.

``gateway.cli`` routes ``asgigw certs ...`` here; ``asgigw APP`` stays the main form.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway import devcerts

CA_DIR_HELP = "Folder of the local CA (default: the user data folder, or $ASGIGW_CA_DIR)."


def _fail(message: str) -> None:
    click.echo(f"asgigw certs: error: {message}", err=True)
    sys.exit(2)


def _authority(ca_dir: str | None) -> devcerts.CertificateAuthority:
    folder = devcerts.ca_folder(ca_dir)
    try:
        return devcerts.CertificateAuthority.load_or_create(folder)
    except devcerts.DevCertError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from None


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
        return
    click.echo(f"certificate: {cert_path} (for {', '.join(names)}, valid {days} days)")
    click.echo(f"key:         {key_path}")
    click.echo(f"issued by:   {authority.cert_path}")
