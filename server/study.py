"""A study's trust material: its certificate authority, the SuperLink's certificate, enrolled sites' keys.

Layout of a study directory (everything under ``private/`` stays with the coordinator)::

    ca.crt                      the study's root certificate (sent to every hospital)
    server.crt                  the SuperLink's TLS certificate, signed by the CA
    private/ca.key              the CA's key (signs server certificates only)
    private/server.key          the SuperLink's TLS key
    enrolled/<site>.pub         one OpenSSH EC public key per admitted site
    enrolled/<site>.role        its role in the study: ``train`` or ``external`` (the handshake must claim it)
    outbox/<site>/              what to send to a hospital (ca.crt, and its key pair if issued here)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.messages import SITE_ROLES, valid_site_name

CURVE = ec.SECP384R1  # Flower's SuperNode authentication takes NIST EC keys; P-384 is its documented choice


class StudyError(ValueError):
    """The study directory or a key in it is missing or unusable."""


@dataclass(frozen=True)
class Study:
    """Paths of one study directory."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        """The study's root certificate."""
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key."""
        return self.root / "private" / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The SuperLink's certificate."""
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        """The SuperLink's private key."""
        return self.root / "private" / "server.key"

    @property
    def enrolled_dir(self) -> Path:
        """One ``<site>.pub`` per admitted site."""
        return self.root / "enrolled"

    def outbox(self, site: str) -> Path:
        """What to send to one hospital."""
        return self.root / "outbox" / site

    def check(self) -> None:
        """Fail naming the first missing file of an initialised study."""
        for path in (self.ca_cert, self.server_cert, self.server_key):
            if not path.is_file():
                raise StudyError(f"{path}: missing; create the study with `axilla-study init --study {self.root}`")


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name == "private":
        path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _san(host: str) -> x509.GeneralName:
    """A subject alternative name for a host name or IP address."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def init_study(root: Path, hosts: list[str], name: str = "axilla study", days: int = 825) -> Study:
    """Create a study's CA and the SuperLink certificate valid for ``hosts`` (names or IPs)."""
    study = Study(Path(root))
    if study.ca_cert.exists():
        raise StudyError(f"{study.ca_cert}: a study already exists here; use `axilla-study server-cert` to reissue")
    if not hosts:
        raise StudyError("give at least one --host the hospitals will use to reach the SuperLink")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(CURVE())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    study.root.mkdir(parents=True, exist_ok=True)
    study.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_private(study.ca_key, _pem_key(ca_key))
    issue_server_cert(study, hosts, days)
    study.enrolled_dir.mkdir(exist_ok=True)
    return study


def import_tls(root: Path, ca_cert: Path, server_cert: Path, server_key: Path) -> Study:
    """Take an institution's existing TLS material instead of a new CA (no CA key is kept then)."""
    study = Study(Path(root))
    if study.ca_cert.exists():
        raise StudyError(f"{study.ca_cert}: a study already exists here")
    try:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(server_cert.read_bytes())
        key = serialization.load_pem_private_key(server_key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as err:
        raise StudyError(f"cannot read the TLS material ({ca_cert}, {server_cert}, {server_key}): {err}") from err
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise StudyError(f"{server_cert}: not issued by {ca_cert}") from err
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise StudyError(f"{server_key}: does not belong to {server_cert}")
    study.root.mkdir(parents=True, exist_ok=True)
    study.ca_cert.write_bytes(ca_cert.read_bytes())
    study.server_cert.write_bytes(server_cert.read_bytes())
    _write_private(study.server_key, server_key.read_bytes())
    study.enrolled_dir.mkdir(exist_ok=True)
    return study


def issue_server_cert(study: Study, hosts: list[str], days: int = 825) -> Path:
    """(Re)issue the SuperLink's TLS certificate for ``hosts``, signed by the study CA."""
    if not study.ca_key.exists():
        raise StudyError(f"{study.ca_key}: missing; this study uses imported TLS material, so reissue the certificate with its own CA")
    ca = x509.load_pem_x509_certificate(study.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(study.ca_key.read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(CURVE())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    study.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(study.server_key, _pem_key(key))
    return study.server_cert


def generate_site_keys(private_key: Path) -> Path:
    """Write a new OpenSSH EC key pair (``private_key`` and ``private_key.pub``); return the public key's path."""
    if private_key.exists():
        raise StudyError(f"{private_key}: exists; refusing to overwrite a site key")
    key = ec.generate_private_key(CURVE())
    _write_private(
        private_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    public = private_key.with_name(private_key.name + ".pub")
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return public


def read_public_key(path: Path) -> bytes:
    """Read and validate an OpenSSH EC public key (NIST curve); return it as one line."""
    try:
        data = path.read_bytes().strip()
    except OSError as err:
        raise StudyError(f"{path}: cannot read the public key ({err.strerror})") from err
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise StudyError(f"{path}: not an OpenSSH public key ({err})") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise StudyError(f"{path}: SuperNode authentication needs an EC key on a NIST curve (P-256/384/521)")
    return data


def add_site(study: Study, site: str, role: str, public_key: Path | None = None) -> Path:
    """Enrol a site with its role: its given public key, or a key pair issued here into its outbox. Returns the outbox."""
    study.check()
    if not valid_site_name(site):
        raise StudyError(f"site name {site!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit, no '..')")
    _check_role(site, role)
    target = study.enrolled_dir / f"{site}.pub"
    if target.exists():
        raise StudyError(f"{target}: site '{site}' is already enrolled; remove it first to change its key")
    outbox = study.outbox(site)
    outbox.mkdir(parents=True, exist_ok=True)
    if public_key is None:
        public_key = generate_site_keys(outbox / f"{site}.key")
    data = read_public_key(public_key)
    for other in enrolled_sites(study).items():
        if other[1] == data:
            raise StudyError(f"{public_key}: this key is already enrolled as site '{other[0]}'")
    study.enrolled_dir.mkdir(exist_ok=True)
    _write_role(study, site, role)
    target.write_bytes(data + b"\n")
    (outbox / "ca.crt").write_bytes(study.ca_cert.read_bytes())
    return outbox


def set_role(study: Study, site: str, role: str) -> None:
    """Change an enrolled site's role (takes effect at the next run's handshake)."""
    _check_role(site, role)
    if not (study.enrolled_dir / f"{site}.pub").exists():
        raise StudyError(f"site '{site}' is not enrolled (no {study.enrolled_dir / f'{site}.pub'})")
    _write_role(study, site, role)


def _check_role(site: str, role: str) -> None:
    if role not in SITE_ROLES:
        raise StudyError(f"site '{site}': role {role!r}, expected one of {', '.join(SITE_ROLES)}")


def _write_role(study: Study, site: str, role: str) -> None:
    (study.enrolled_dir / f"{site}.role").write_text(role + "\n", encoding="utf-8")


def remove_site(study: Study, site: str) -> None:
    """Withdraw a site's enrolment (the SuperLink forgets its key at its next start)."""
    target = study.enrolled_dir / f"{site}.pub"
    if not target.exists():
        raise StudyError(f"site '{site}' is not enrolled (no {target})")
    target.unlink()
    (study.enrolled_dir / f"{site}.role").unlink(missing_ok=True)


def enrolled_sites(study: Study) -> dict[str, bytes]:
    """Enrolled site names and their public keys, sorted by name."""
    if not study.enrolled_dir.is_dir():
        return {}
    return {p.stem: read_public_key(p) for p in sorted(study.enrolled_dir.glob("*.pub"))}


def enrolled_roles(study: Study) -> dict[str, str]:
    """Each enrolled site's role, sorted by name; a site enrolled without one is refused, naming the command that sets it."""
    roles = {}
    for site in sorted(p.stem for p in study.enrolled_dir.glob("*.pub")):  # the names only: no key is parsed again
        path = study.enrolled_dir / f"{site}.role"
        try:
            role = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise StudyError(
                f"{path}: missing; site '{site}' was enrolled without a role. Set it with "
                f"`axilla-study --study {study.root} set-role {site} --role train|external`"
            ) from None
        if role not in SITE_ROLES:
            raise StudyError(f"{path}: role {role[:20]!r}, expected one of {', '.join(SITE_ROLES)}")
        roles[site] = role
    return roles
