"""Reading the Vonage application's private key in every form operators have it.

The SDK takes only PKCS#8 PEM text or a path with a file extension; operators have
PKCS#1 files (``BEGIN RSA PRIVATE KEY``), Docker secrets without extensions, and PEM text
in an environment variable with literal ``\\n``. We accept all of them and hand the SDK
PKCS#8 text.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


class PrivateKeyError(ValueError):
    """The private key is missing, unreadable or not an RSA key. Message is operator-ready."""


def load_private_key(*, pem: str | None = None, path: Path | None = None) -> RSAPrivateKey:
    if pem:
        data = pem.strip().replace("\\n", "\n").encode()
        source = "VONAGE_PRIVATE_KEY"
    elif path is not None:
        try:
            data = path.expanduser().read_bytes()
        except OSError as exc:
            raise PrivateKeyError(
                f"VONAGE_PRIVATE_KEY_PATH {path}: cannot read it ({exc.strerror})"
            ) from None
        source = f"VONAGE_PRIVATE_KEY_PATH {path}"
    else:
        raise PrivateKeyError("set VONAGE_PRIVATE_KEY_PATH or VONAGE_PRIVATE_KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PrivateKeyError(
            f"{source} is not an unencrypted PEM private key ({exc.__class__.__name__})"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise PrivateKeyError(f"{source} is not an RSA key; Vonage applications use RSA keys")
    return key


def pkcs8_pem(key: RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
