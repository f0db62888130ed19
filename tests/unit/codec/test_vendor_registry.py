"""The one vendor registry (``VENDOR_CODECS``): everything vendor-wide derives from it."""

from __future__ import annotations

from pipeline.codec.vendors import (
    FORMATS,
    REGISTRY_VENDOR,
    VENDOR_CODECS,
    VENDOR_RULES,
    VENDORS,
)
from pipeline.reference.sites import CANONICAL_VENDOR


def test_names_and_formats_are_unique_and_never_ours() -> None:
    names = [vendor.name for vendor in VENDOR_CODECS]
    formats = [fmt for vendor in VENDOR_CODECS for fmt in vendor.formats]
    assert len(set(names)) == len(names)
    assert len(set(formats)) == len(formats)
    assert not {CANONICAL_VENDOR, "unknown"} & (set(names) | set(formats))


def test_derived_tables_follow_the_registry() -> None:
    formats = [fmt for vendor in VENDOR_CODECS for fmt in vendor.formats]
    assert ("canonical", *formats, "unknown") == FORMATS
    assert (CANONICAL_VENDOR, *(vendor.name for vendor in VENDOR_CODECS)) == VENDORS
    assert tuple(vendor.rules for vendor in VENDOR_CODECS) == VENDOR_RULES
    assert {REGISTRY_VENDOR[fmt] for fmt in formats} == set(VENDORS[1:])
