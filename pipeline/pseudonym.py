"""Keyed pseudonyms of plates: HMAC-SHA256 with a secret key file, never printed.

The same plate always gets the same pseudonym under one key, so analysts can count and join
passages without seeing a plate, and the activity log can answer "who looked at this plate"
without storing it. Without the key a pseudonym cannot be reversed or recomputed from a guess.

    pseudo = Pseudonymiser.from_key_file(Path(".anpr/access/pseudonym.key"))
    pseudo.one("AB12345")        # 'p_3f0c...' (18 characters)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Settings
from pipeline.errors import ConfigError

PREFIX = "p_"
HEX_CHARS = 16  # 64 bits: collisions stay unlikely far beyond the lake's plate count
PSEUDONYM = re.compile(rf"{PREFIX}[0-9a-f]{{{HEX_CHARS}}}")
_KEY_BYTES = 32


class _Hmac:
    """HMAC-SHA256 under one key, the key schedule done once (RFC 2104): the inner and outer
    hashes of the padded key are copied per message. Same digests as :func:`hmac.new`, about
    twice as fast on short messages (a plate), where the schedule was most of the cost."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        return self.digest(message).hex()


class Pseudonymiser:
    """HMAC-SHA256 of the normalised plate under a secret key, truncated to 64 bits."""

    __slots__ = ("_ids", "_plates")

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        self._plates = _Hmac(key)
        # Ids get a key of their own, derived from the plates' (label "anpr keyed ids").
        self._ids = _Hmac(hmac.new(key, b"anpr keyed ids", hashlib.sha256).digest())

    def __repr__(self) -> str:
        return "Pseudonymiser(key=********)"

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonymiser:
        """The service's pseudonymiser (``access.pseudonym_key_file``)."""
        return cls.from_key_file(key_file(settings))

    @classmethod
    def from_key_file(cls, path: Path) -> Pseudonymiser:
        """Read the key; create it (random, mode 0600) if the file does not exist yet."""
        return cls(read_key(path, "access.pseudonym_key_file"))

    def one(self, plate: str) -> str:
        return PREFIX + self._plates.hexdigest(plate.encode())[:HEX_CHARS]

    def keyed_ids(self, ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """A keyed 64-bit replacement for each id (nulls stay null): HMAC-SHA256 of the id
        under a key derived for ids, so it cannot be recomputed from a guessed plate (as
        the stored passage id can) nor compared with a plate's pseudonym."""
        array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        encoded = pc.dictionary_encode(array)
        mac = self._ids.digest
        keyed = [
            int.from_bytes(mac(int(v).to_bytes(8, "big", signed=True))[:8], "big", signed=True)
            for v in encoded.dictionary.to_pylist()
        ]
        return pc.take(pa.array(keyed, pa.int64()), encoded.indices)

    def many(self, plates: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of a string column, computing each distinct plate once (nulls stay null)."""
        array = plates.combine_chunks() if isinstance(plates, pa.ChunkedArray) else plates
        encoded = pc.dictionary_encode(array)
        names = pa.array([self.one(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return pc.take(names, encoded.indices)


def key_file(settings: Settings) -> Path:
    """Where the pseudonym key lives: ``access.pseudonym_key_file``, else under the state."""
    return settings.access.pseudonym_key_file or settings.state.dir / "access" / "pseudonym.key"


def read_key(path: Path, setting: str) -> bytes:
    """The secret key in ``path`` (hex); created (random, mode 0600) if it does not exist yet.

    ``setting`` names the configuration key in errors. Refused if others can read the file.
    """
    if not path.exists():
        _create_key(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(setting, f"{path} is readable by others: chmod 600 it")
    text = path.read_text(encoding="ascii").strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(setting, f"{path} is not a hex key") from None


def _create_key(path: Path) -> None:
    """Write a new random key atomically, readable by its owner only; keep a racing winner's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # Fails if another process created the key first: then theirs is kept.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
