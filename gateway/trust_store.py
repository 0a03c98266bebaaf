"""``asgigw certs trust`` / ``untrust``: put the local CA into (or take it out of) trust stores.

A plan is a list of :class:`Step` values, built from the platform and the tools found on
``PATH``, so tests check the exact argv for every OS without running anything. Running a
plan prints one line per step: what was done, or, when a step lacks permission, the exact
command to run instead (with ``sudo`` on POSIX).

- Linux: Debian/Ubuntu ``update-ca-certificates``; Fedora/RHEL ``update-ca-trust``;
  otherwise p11-kit's ``trust anchor``.
- macOS: ``security add-trusted-cert`` into the login keychain (no sudo needed).
- Windows: ``certutil -user -addstore Root`` (the current user's root store).
- Firefox and Chrome on Linux/macOS keep their own NSS databases: NSS ``certutil`` adds the
  CA to each one found, when that tool is installed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

Which = Callable[[str], str | None]


@dataclass(frozen=True)
class Step:
    """One action: run ``argv``, or copy ``copy_from`` to ``path``, or remove ``path``."""

    description: str
    argv: tuple[str, ...] = ()
    copy_from: str | None = None
    path: str | None = None
    remove: bool = False
    # Commands that exit non-zero when the thing to remove is already gone are fine.
    ignore_failure: bool = False

    def shell(self) -> str:
        """The equivalent shell command, for the user to run with more rights."""
        if self.argv:
            return shlex.join(self.argv)
        if self.remove:
            return shlex.join(["rm", "-f", str(self.path)])
        return shlex.join(["cp", str(self.copy_from), str(self.path)])


@dataclass(frozen=True)
class CAFile:
    """The CA certificate file and the identifiers the stores know it by."""

    path: str
    sha1: str
    short_id: str

    @classmethod
    def read(cls, path: Path) -> CAFile:
        """Read the CA at ``path`` (raises OSError/ValueError when unusable)."""
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        # Windows certutil and macOS security name certificates by their SHA-1 thumbprint.
        sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()
        return cls(str(path), sha1, cert.fingerprint(hashes.SHA256()).hex()[:16])

    @property
    def nickname(self) -> str:
        """The NSS nickname: unique per CA, so two machines' CAs never collide."""
        return f"asgigw local development CA {self.short_id}"


def nss_databases(home: Path, platform: str) -> list[Path]:
    """NSS databases of Chrome/Chromium (Linux) and Firefox profiles that exist."""
    candidates: list[Path] = []
    if platform.startswith("linux"):
        candidates.append(home / ".pki" / "nssdb")
        profiles = [home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" / "firefox"]
    elif platform == "darwin":
        profiles = [home / "Library" / "Application Support" / "Firefox" / "Profiles"]
    else:
        return []
    for folder in profiles:
        if folder.is_dir():
            candidates.extend(sorted(child for child in folder.iterdir() if child.is_dir()))
    return [folder for folder in candidates if (folder / "cert9.db").exists()]


def _linux_system_steps(ca: CAFile, which: Which, add: bool) -> list[Step]:
    if which("update-ca-certificates"):
        target = f"/usr/local/share/ca-certificates/asgigw-{ca.short_id}.crt"
        if add:
            return [
                Step(f"copy the CA to {target}", copy_from=ca.path, path=target),
                Step("rebuild the system CA bundle", argv=("update-ca-certificates",)),
            ]
        # A plain run rebuilds the bundle and drops the links of certificates now gone.
        return [
            Step(f"remove {target}", path=target, remove=True),
            Step("rebuild the system CA bundle", argv=("update-ca-certificates",)),
        ]
    if which("update-ca-trust"):
        target = f"/etc/pki/ca-trust/source/anchors/asgigw-{ca.short_id}.pem"
        first = Step(f"copy the CA to {target}", copy_from=ca.path, path=target)
        if not add:
            first = Step(f"remove {target}", path=target, remove=True)
        return [first, Step("rebuild the system CA bundle", argv=("update-ca-trust", "extract"))]
    if which("trust"):
        action = "--store" if add else "--remove"
        return [Step("p11-kit trust anchor", argv=("trust", "anchor", action, ca.path), ignore_failure=not add)]
    return []


def _nss_steps(ca: CAFile, which: Which, databases: Sequence[Path], add: bool) -> list[Step]:
    certutil = which("certutil")
    if not certutil:
        return []
    steps = []
    for database in databases:
        target = f"sql:{database}"
        argv: tuple[str, ...]
        if add:
            argv = (certutil, "-A", "-d", target, "-t", "C,,", "-n", ca.nickname, "-i", ca.path)
            steps.append(Step(f"add to the NSS database {database}", argv=argv))
        else:
            argv = (certutil, "-D", "-d", target, "-n", ca.nickname)
            steps.append(Step(f"remove from the NSS database {database}", argv=argv, ignore_failure=True))
    return steps


def plan(
    ca: CAFile,
    platform: str,
    add: bool,
    which: Which = shutil.which,
    home: Path | None = None,
) -> list[Step]:
    """The steps that trust (``add``) or untrust the CA on ``platform``."""
    home = home or Path.home()
    if platform == "win32":
        if add:
            return [
                Step("add to the current user's Root store", argv=("certutil", "-user", "-addstore", "Root", ca.path))
            ]
        argv_windows = ("certutil", "-user", "-delstore", "Root", ca.sha1)
        return [Step("remove from the current user's Root store", argv=argv_windows, ignore_failure=True)]
    if platform == "darwin":
        keychain = str(home / "Library" / "Keychains" / "login.keychain-db")
        if add:
            argv: tuple[str, ...] = ("security", "add-trusted-cert", "-r", "trustRoot", "-k", keychain, ca.path)
            steps = [Step("trust in the login keychain", argv=argv)]
        else:
            steps = [
                Step(
                    "remove the trust setting", argv=("security", "remove-trusted-cert", ca.path), ignore_failure=True
                ),
                Step(
                    "delete from the login keychain",
                    argv=("security", "delete-certificate", "-Z", ca.sha1, keychain),
                    ignore_failure=True,
                ),
            ]
    else:
        steps = _linux_system_steps(ca, which, add)
    return steps + _nss_steps(ca, which, nss_databases(home, platform), add)


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)


def _denied(output: str) -> bool:
    text = output.lower()
    return (
        "permission denied" in text or "not permitted" in text or "must be root" in text or "access is denied" in text
    )


def execute(steps: Sequence[Step], run: Runner = _run_command, elevate: str = "sudo ") -> tuple[list[str], bool]:
    """Run ``steps`` in order; return (report lines, success).

    After a step fails for lack of permission, the rest of the system steps are not tried
    but printed as the commands to run with more rights.
    """
    lines: list[str] = []
    to_run_elevated: list[Step] = []
    ok = True
    for step in steps:
        if to_run_elevated and not step.description.startswith(("add to the NSS", "remove from the NSS")):
            to_run_elevated.append(step)
            continue
        try:
            if step.argv:
                result = run(step.argv)
                output = (result.stderr or result.stdout or "").strip().splitlines()
                if result.returncode != 0 and _denied(result.stderr + result.stdout):
                    to_run_elevated.append(step)
                elif result.returncode != 0 and not step.ignore_failure:
                    ok = False
                    detail = output[-1] if output else "no output"
                    lines.append(f"failed: {step.description}: {step.shell()} exited {result.returncode}: {detail}")
                elif result.returncode != 0:
                    lines.append(f"skipped: {step.description} (nothing to remove)")
                else:
                    lines.append(f"done: {step.description} ({step.shell()})")
            elif step.remove:
                Path(str(step.path)).unlink(missing_ok=True)
                lines.append(f"done: {step.description}")
            else:
                shutil.copyfile(str(step.copy_from), str(step.path))
                lines.append(f"done: {step.description}")
        except PermissionError:
            to_run_elevated.append(step)
        except OSError as exc:
            ok = False
            lines.append(f"failed: {step.description}: {exc.strerror or exc}")
    if to_run_elevated:
        ok = False
        lines.append("not enough permission for the system trust store; run:")
        lines.extend(f"  {elevate}{step.shell()}" for step in to_run_elevated)
    return lines, ok
