"""A throwaway certificate authority, with the ``openssl`` command: for the demo and the tests.

A production service uses the agency's own CA (README, "Reading personal data"): this one lives
in a folder of the service account, signs for two days, and exists to show and test the
mechanism on one machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pipeline.errors import MissingToolError

_DAYS = "2"
_CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise MissingToolError("openssl", "apt-get install openssl")
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: its certificate and key (``<name>.pem``, ``<name>.key``)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req",
        "-x509",
        *_CURVE,
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        _DAYS,
        "-subj",
        f"/CN={name}",
    )
    return cert, key


def issue(folder: Path, ca: tuple[Path, Path], name: str, cn: str, *, server: bool) -> Path:
    """``<name>.pem`` and ``<name>.key`` signed by ``ca``: a server certificate for 127.0.0.1,
    or a client certificate whose common name is ``cn`` (the user name the service sees)."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    _openssl("req", *_CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    ext = folder / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        _DAYS,
        "-extfile",
        str(ext),
    )
    csr.unlink()
    ext.unlink()
    return cert
