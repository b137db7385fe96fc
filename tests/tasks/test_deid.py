"""MIMIC de-identification spans become short tags."""

import pytest

from ct5x_tasks.deid import deid_tag, deidentify


@pytest.mark.parametrize("content, tag", [
    ("First Name8 (NamePattern2) 123", "[Name]"),
    ("Known lastname 992", "[Name]"),
    ("Doctor Last Name", "[Name]"),
    ("Hospital1 18", "[Hospital]"),
    ("Hospital Unit Name 10", "[Hospital]"),
    ("2101-10-20", "[Date]"),
    ("10-20", "[Date]"),
    ("Month (only) 51", "[Date]"),
    ("Year (4 digits) 1234", "[Date]"),
    ("Location (un) 620", "[Location]"),
    ("Street Address(2) 42", "[Location]"),
    ("Telephone/Fax (1) 5", "[Phone]"),
    ("Medical Record Number 77", "[ID]"),
    ("MD Number(1) 3", "[ID]"),
    ("Age over 90 ", "[Age]"),
    ("E-mail address 4", "[Contact]"),
    ("Company 3", "[Organization]"),
    ("", "[Redacted]"),
    ("something else", "[Redacted]"),
])
def test_tags(content, tag):
    assert deid_tag(content) == tag


def test_replaces_every_span_and_nothing_else():
    text = "Pt [**Known lastname 1**] seen [**2101-1-2**] at [**Hospital 3**]; see * note [*x*]"
    assert deidentify(text) == "Pt [Name] seen [Date] at [Hospital]; see * note [*x*]"
    assert deidentify("no spans here") == "no spans here"
