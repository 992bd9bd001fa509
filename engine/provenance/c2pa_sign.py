"""C2PA manifests: this installation's signing credentials, signing, and reading back.

Credentials (EC P-256, made with ``cryptography`` on first use, kept in
``DATA_DIR/provenance/``; private keys mode 0600):

- ``c2pa-root.pem`` / ``c2pa-root.key``: a self-signed root CA, one per installation;
- ``c2pa-signer.pem`` / ``c2pa-signer.key``: a leaf certificate issued by that root,
  ``digitalSignature`` key usage and ``emailProtection`` extended key usage (an EKU
  the C2PA trust model accepts for signers).

Signing: no timestamp authority (works offline; the signature is then only valid
while the leaf certificate is), no thumbnails, one ``c2pa.actions`` assertion with
``c2pa.created`` and digitalSourceType ``compositeWithTrainedAlgorithmicMedia``, and
a small ``org.fusion-studio.provenance`` assertion with the watermark payload
(never the raw job id: the manifest is public, the job tag is resolved locally).
Signing must be the *last* write to a file: any byte changed afterwards breaks
the hard binding and the manifest reads as invalid.

Reading: trust anchors are replaced by this installation's root, so "trusted"
means "signed by this installation", and "valid" means a sound signature by
someone else.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine.atomic import write_atomic
from engine.errors import InvalidInput, ModelUnavailable
from engine.provenance.metadata import DIGITAL_SOURCE_TYPE, SOFTWARE
from engine.provenance.payload import file_lock, provenance_dir

ROOT_CERT = "c2pa-root.pem"
ROOT_KEY = "c2pa-root.key"
SIGNER_CERT = "c2pa-signer.pem"
SIGNER_KEY = "c2pa-signer.key"
ROOT_YEARS = 20
SIGNER_YEARS = 10
SOFTWARE_VERSION = "0.1.0"
PROVENANCE_ASSERTION = "org.fusion-studio.provenance"

# Formats c2pa-python 0.38 (c2pa-rs 0.91) signs, by what the file's bytes say.
FORMAT_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avif": "image/avif",
    "heic": "image/heic",
    "tiff": "image/tiff",
    "gif": "image/gif",
}


@dataclass(frozen=True)
class Credentials:
    """PEM texts of this installation's C2PA root and signer."""

    directory: Path
    root_cert_pem: str
    signer_cert_pem: str
    signer_key_pem: str = field(repr=False)

    @property
    def chain_pem(self) -> str:
        """Signer first, then its issuer, as C2PA expects the certificate chain."""
        return self.signer_cert_pem + self.root_cert_pem


@dataclass
class ManifestReport:
    """What reading a file's C2PA manifest store found."""

    status: str  # "trusted" | "valid" | "invalid" | "absent"
    reason: str | None = None
    validation_state: str | None = None
    failures: list[dict] = field(default_factory=list)
    digital_source_type: str | None = None
    signer: dict | None = None
    claim_generator: str | None = None
    payload: str | None = None
    label: str | None = None

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "validation_state": self.validation_state,
            "failures": self.failures,
            "digital_source_type": self.digital_source_type,
            "signer": self.signer,
            "claim_generator": self.claim_generator,
            "watermark_payload": self.payload,
            "manifest": self.label,
        }


def load_credentials(data_dir: str | Path) -> Credentials | None:
    """This installation's credentials, or None before the first signing."""
    directory = provenance_dir(data_dir)
    paths = [directory / name for name in (ROOT_CERT, SIGNER_CERT, SIGNER_KEY)]
    if not all(path.is_file() for path in paths):
        return None
    root, signer, key = (path.read_text("ascii") for path in paths)
    return Credentials(directory, root, signer, key)


def ensure_credentials(data_dir: str | Path) -> Credentials:
    """Load the credentials, generating the root CA and signer on first call (once)."""
    existing = load_credentials(data_dir)
    if existing is not None:
        return existing
    directory = provenance_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / ".credentials.lock"):
        existing = load_credentials(data_dir)
        if existing is not None:
            return existing
        _generate(directory)
    credentials = load_credentials(data_dir)
    assert credentials is not None
    return credentials


def c2pa_format(path: str | Path) -> str | None:
    """The C2PA format name of a file, from its first bytes; None when C2PA cannot sign it."""
    with Path(path).open("rb") as handle:
        head = handle.read(32)
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "mov"
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1"):
            return "heic"
        return "mp4"
    return None


def sign_file(
    path: str | Path,
    credentials: Credentials,
    *,
    title: str | None = None,
    payload_hex: str | None = None,
) -> bool:
    """Embed a signed manifest into ``path`` in place; False when the format is unsupported.

    The signed copy is written beside the file and renamed over it, so a crash
    leaves either the unsigned or the signed file, never half of one.
    """
    import c2pa

    path = Path(path)
    fmt = c2pa_format(path)
    if fmt is None:
        return False
    manifest = {
        "claim_generator_info": [{"name": SOFTWARE, "version": SOFTWARE_VERSION}],
        "title": title or path.name,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE,
                            "softwareAgent": {"name": SOFTWARE, "version": SOFTWARE_VERSION},
                        }
                    ]
                },
            }
        ],
    }
    if payload_hex:
        manifest["assertions"].append(
            {"label": PROVENANCE_ASSERTION, "data": {"watermark_payload": payload_hex}}
        )
    settings = _settings(credentials.root_cert_pem)
    settings["builder"] = {"thumbnail": {"enabled": False}}
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    temp = Path(temp_name)
    try:
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(
                c2pa.C2paSigningAlg.ES256,
                credentials.chain_pem.encode("ascii"),
                credentials.signer_key_pem.encode("ascii"),
                None,  # no timestamp authority
            )
        )
        with (
            signer,
            c2pa.Context.from_dict(settings) as context,
            c2pa.Builder(manifest, context=context) as builder,
            path.open("rb") as source,
            os.fdopen(fd, "w+b") as dest,
        ):
            builder.sign(signer, FORMAT_MIME[fmt], source, dest)
            dest.flush()
            os.fsync(dest.fileno())
        os.replace(temp, path)
    except c2pa.C2paError as exc:
        raise InvalidInput(f"{path.name}: C2PA signing failed ({exc})") from None
    finally:
        temp.unlink(missing_ok=True)
    return True


def read_manifest(path: str | Path, trust_anchor_pem: str | None) -> ManifestReport:
    """Validate the file's C2PA manifest store against ``trust_anchor_pem`` (offline)."""
    import c2pa

    path = Path(path)
    fmt = c2pa_format(path)
    if fmt is None:
        return ManifestReport(status="absent", reason="C2PA does not support this file format")
    settings = _settings(trust_anchor_pem)
    try:
        with c2pa.Context.from_dict(settings) as context, path.open("rb") as stream:
            reader = c2pa.Reader.try_create(FORMAT_MIME[fmt], stream, None, context)
            if reader is None:
                return ManifestReport(status="absent", reason="no C2PA manifest in the file")
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        return ManifestReport(status="invalid", reason=f"the manifest cannot be read ({exc})")
    return _report(store, trusted_possible=trust_anchor_pem is not None)


def _report(store: dict, trusted_possible: bool) -> ManifestReport:
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    state = store.get("validation_state")
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [
        {"code": item.get("code"), "explanation": item.get("explanation")}
        for item in results.get("failure", [])
    ]
    real_failures = [f for f in failures if f["code"] != "signingCredential.untrusted"]
    report = ManifestReport(
        status="invalid",
        validation_state=state,
        failures=failures,
        signer=manifest.get("signature_info"),
        label=label,
    )
    generators = manifest.get("claim_generator_info") or []
    if generators:
        report.claim_generator = " ".join(
            str(generators[0].get(key)) for key in ("name", "version") if generators[0].get(key)
        )
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions", []):
                if action.get("digitalSourceType"):
                    report.digital_source_type = action["digitalSourceType"]
        if assertion.get("label") == PROVENANCE_ASSERTION:
            report.payload = (assertion.get("data") or {}).get("watermark_payload")
    if not label:
        report.reason = "the manifest store has no active manifest"
    elif state == "Trusted" and trusted_possible and not real_failures:
        report.status = "trusted"
    elif state in ("Valid", "Trusted") and not real_failures:
        report.status = "valid"
        report.reason = "signature valid, but not by this installation's certificate authority"
    else:
        report.reason = (
            "; ".join(f"{f['code']}: {f['explanation']}" for f in real_failures)
            or f"validation state {state}"
        )
    return report


def _settings(trust_anchor_pem: str | None) -> dict:
    settings: dict = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchor_pem:
        settings["trust"] = {"trust_anchors": trust_anchor_pem}
    return settings


def _generate(directory: Path) -> None:
    """Create the root CA and the signer certificate and store them (keys 0600)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # pragma: no cover - cryptography is a c2pa-python dependency
        raise ModelUnavailable(f"the cryptography package is missing ({exc})") from None

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    installation = os.urandom(4).hex()

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fusion Studio"),
                x509.NameAttribute(
                    NameOID.ORGANIZATIONAL_UNIT_NAME, f"installation {installation}"
                ),
            ]
        )

    def usage(**allowed: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        flags.update(allowed)
        return x509.KeyUsage(**flags)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name("Fusion Studio installation root CA")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("Fusion Studio content signer"))
        .issuer_name(root_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * SIGNER_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    # Keys first and certificates last: load_credentials() sees a complete set or nothing.
    write_atomic(directory / ROOT_KEY, key_pem(root_key), mode=0o600)
    write_atomic(directory / SIGNER_KEY, key_pem(signer_key), mode=0o600)
    write_atomic(directory / ROOT_CERT, root.public_bytes(serialization.Encoding.PEM))
    write_atomic(directory / SIGNER_CERT, signer.public_bytes(serialization.Encoding.PEM))
    with contextlib.suppress(OSError):
        os.chmod(directory / ROOT_KEY, 0o600)
        os.chmod(directory / SIGNER_KEY, 0o600)
