"""Files the package ships and reads at run time, found through :mod:`importlib.resources`.

``sites.toml`` (the default site registry), ``schemas/`` (the generated contract for producers
and the lake table descriptions) and ``kafka/`` (Maven pom, log4j2 and server.properties
template of the local development broker). They live inside the package so that an installed
wheel finds them without a checkout beside it; in a checkout (``pip install -e``) these are the
committed files, so ``anpr schemas write`` regenerates the repository's copy.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pipeline.errors import ConfigError


def path(*parts: str) -> Path:
    """A shipped file or folder as a file-system path.

    Its users hand it on to Maven and Java, which need real files; a wheel installs unzipped, so
    the resource is always a :class:`~pathlib.Path` (a zipped install is refused, not extracted).
    """
    resource = files(__name__).joinpath(*parts)
    if not isinstance(resource, Path):
        raise ConfigError("/".join(parts), f"package data is not on the file system: {resource}")
    return resource
