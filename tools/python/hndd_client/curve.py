"""CURVE credentials: what a trainer host needs to reach a daemon's TCP endpoints.

`hndd keys client --run-dir DIR --name NAME` writes DIR/keys/clients/NAME.secret (JSON, mode 0600):

    {"format": "hndd-curve-credential", "version": 1, "name": "NAME",
     "public_key": "<Z85>", "secret_key": "<Z85>", "server_public_key": "<Z85>"}

— the client's key pair and the daemon's public key, 40 characters of Z85 each. `Client(key=FILE)`,
`push --key FILE` and `watch(key=FILE)` read it with `load_credential`. A file that group or others
may read gets a warning naming it and its mode, as ssh warns of a private key (it is still used).
"""
from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Optional

import zmq
import zmq.utils.z85

from .jsonfile import read_json_file

logger = logging.getLogger("hndd_client")

CREDENTIAL_FORMAT = "hndd-curve-credential"
KEY_LENGTH = 40


class CredentialError(ValueError):
    """A credential file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Credential:
    """A client's CURVE key pair and the daemon's public key (Z85 text)."""

    path: str
    name: str
    public_key: str
    secret_key: str
    server_public_key: str
    #: The permission warning given when it was loaded, if any.
    warning: Optional[str] = None

    def apply(self, sock: "zmq.Socket") -> None:
        """Makes `sock` a CURVE client of the daemon (before it connects)."""
        sock.curve_serverkey = self.server_public_key.encode()
        sock.curve_publickey = self.public_key.encode()
        sock.curve_secretkey = self.secret_key.encode()


def load_credential(path) -> Credential:
    """Reads and checks a credential file (see the module doc); warns when others may read it."""
    path = os.fspath(path)
    data = read_json_file(path, "credential file", CredentialError, " (an hndd credential file is JSON)")
    if not isinstance(data, dict):
        raise CredentialError(f"{path}: not a JSON object")
    if data.get("format") != CREDENTIAL_FORMAT or data.get("version") != 1:
        raise CredentialError(f"{path}: format {data.get('format')!r} version {data.get('version')!r}; expected "
                              f"{CREDENTIAL_FORMAT!r} version 1 (made by hndd keys client)")
    keys = {field: _key(path, data, field) for field in ("public_key", "secret_key", "server_public_key")}
    if zmq.curve_public(keys["secret_key"].encode()).decode() != keys["public_key"]:
        raise CredentialError(f"{path}: public_key is not the public key of secret_key")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CredentialError(f"{path}: field 'name' is missing or not a string")
    return Credential(path=path, name=name, warning=_permission_warning(path), **keys)


def _key(path: str, data: dict, field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or len(value) != KEY_LENGTH:
        raise CredentialError(f"{path}: field {field!r} must be a CURVE key, {KEY_LENGTH} characters of Z85")
    try:
        zmq.utils.z85.decode(value.encode())
    except (ValueError, KeyError, IndexError):
        raise CredentialError(f"{path}: field {field!r} is not Z85 text") from None
    return value


def _permission_warning(path: str) -> Optional[str]:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not mode & 0o077:
        return None
    message = (f"hndd client: {path} holds a secret key but its mode is {mode:04o} (group or others may read it): "
               f"chmod 600 {path}")
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return message


def check_curve_available() -> None:
    """Raises when this pyzmq's libzmq cannot do CURVE."""
    if not zmq.has("curve"):
        raise CredentialError(f"this pyzmq (libzmq {zmq.zmq_version()}) has no CURVE support; it cannot use a credential")
