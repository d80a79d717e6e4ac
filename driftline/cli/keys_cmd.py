"""``driftline keys create DIR``: an Ed25519 key pair for signing model records.

The trainer holds ``signing.pem`` (``DRIFTLINE_SIGNING_KEY_FILE``, written
owner-only); serving nodes hold only ``verify.pem``
(``DRIFTLINE_VERIFY_KEY_FILE``), so a compromised node cannot sign a model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.errors import ConfigError
from driftline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keys", help="signing keys for model records")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="write an Ed25519 key pair: DIR/signing.pem and DIR/verify.pem")
    create.add_argument("directory", help="folder to write the two files into (created if missing)")
    create.add_argument("--force", action="store_true", help="replace existing key files")
    create.set_defaults(handler=create_keys)


def create_keys(args: argparse.Namespace, _settings: Settings) -> int:
    folder = Path(args.directory)
    private, public = folder / "signing.pem", folder / "verify.pem"
    if not args.force and (private.exists() or public.exists()):
        raise ConfigError(f"{folder} already holds a key; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    except OSError as exc:
        raise ConfigError(f"cannot write the key pair to {folder}: {exc.strerror or exc}") from None
    print(f"trainer:       DRIFTLINE_SIGNING_KEY_FILE={private}  (keep it secret)\n"
          f"serving nodes: DRIFTLINE_VERIFY_KEY_FILE={public}")
    return 0
