"""MIMIC de-identification spans become the study's tags, with the study's joining rule."""

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks.deid import DEID_TAGS, deid_tag, deidentify

# Span contents as MIMIC writes them, and the tag the study's table gives each (written out here).
CASES = [
    ("First Name8 (NamePattern2) 123", "[Name]"),
    ("Last Name (NamePattern4) 97", "[Name]"),
    ("Doctor Last Name 35", "[Name]"),
    ("Clip Number (Radiology) 102", "[Reg#]"),
    ("Hospital1 18", "[Company]"),
    ("Hospital Unit Name 10", "[Company]"),
    ("Numeric Identifier 6", "[Reg#]"),
    ("Location (un) 620", "[LOC]"),
    ("Initials (NamePattern4) 2", "[Name]"),
    ("Known lastname 992", "[Name]"),
    ("Known firstname 3", "[Name]"),
    ("Age over 90 ", "[Age]"),
    ("Medical Record Number 77", "[Reg#]"),
    ("Telephone/Fax (1) 5", "[#]"),
    ("Name (STitle) 4", "[Name]"),
    ("Street Address(2) 42", "[LOC]"),
    ("Date Range 8", "[DR]"),
    ("Date range (1) 9", "[DR]"),
    ("Serial Number 3", "[#]"),
    ("Social Security Number 1", "[#]"),
    ("State 2", "[State]"),
    ("E-mail address 4", "[CI]"),
    ("Company 3", "[Company]"),
    ("Pager number 8", "[#]"),
    ("Country 5", "[Country]"),
    ("MD Number(1) 3", "[Reg#]"),
    ("Wardname 11", "[Name]"),  # its lower case holds 'name', listed before 'Wardname'
    ("College 6", "[Company]"),
    ("Apartment Address(1) 7", "[LOC]"),
    ("URL 1", "[URL]"),
    ("CC Contact Info 2", "[CI]"),
    ("Attending Info 3", "[CI]"),
    ("Job Number 45", "[Reg#]"),
    ("Year (4 digits) 1234", "[YR]"),
    ("Month (only) 51", "[MO]"),
    ("Month/Day/Year 20", "[YR]"),  # Year comes first in the table
    ("Day Month 2", "[MO]"),
    ("Holiday 3", "[DAY]"),
    ("Unit Number 8", "[Reg#]"),
    ("PO Box 2", "[LOC]"),
    ("Dictator Info 9", "[CI]"),
    ("Provider Number 12", "[#]"),
    ("2101-10-20", "2101-10-20"),  # a full date stays as text
    ("10-20", "10-20"),
    ("10/20", "10/20"),
    ("3458", "[Reg#]"),
    ("January 2101", "January 2101"),
    ("Ethnicity 3", "Ethnicity 3"),
    ("  ", ""),
    ("", ""),
]


@pytest.mark.parametrize("content, tag", CASES)
def test_tags(content, tag):
    assert deid_tag(content) == tag


def test_every_kind_of_the_table_is_covered():
    covered = {tag for _, tag in CASES}
    assert {tag for _, tag in DEID_TAGS} <= covered
    matched = {kind for kind, _ in DEID_TAGS
               for content, _ in CASES if kind in content or kind.lower() in content}
    assert matched == {kind for kind, _ in DEID_TAGS}


def test_unmappable_span_names_its_kind_not_its_text():
    with pytest.raises(UserInputError, match="span of kind 'Pharmacy Code' has no tag") as raised:
        deid_tag("Pharmacy Code 4471")
    assert "4471" not in str(raised.value)


def test_pieces_are_joined_with_single_spaces_as_the_study_does():
    text = "Pt [**Known lastname 1**], seen [**2101-1-2**] at [**Hospital 3**]; see * note [*x*]"
    assert deidentify(text) == ("Pt  [Name] , seen  2101-1-2  at  [Company] ; see * note [*x*]")
    assert deidentify("[**Known lastname 1**] [**First Name 2**]") == "[Name]   [Name]"
    assert deidentify("before [****] after") == "before   after"
    assert deidentify("no spans here") == "no spans here"
    assert deidentify("[**Name 1\n2**]") == "[**Name 1\n2**]"  # spans do not cross lines


def test_unmappable_span_in_a_record_names_the_record():
    from ct5x_tasks import mednli
    from ct5x_tasks.family import Formatting
    from ct5x_tasks.windows import TokenCounter

    record = mednli.parse_pair({"sentence1": "at [**Pharmacy Code 4**]", "sentence2": "b",
                                "gold_label": "neutral"}, "dev", 3)
    with pytest.raises(UserInputError, match=r"^record dev:3: a de-identification span of kind"):
        mednli.to_examples([record], Formatting(False, True, False, 256, TokenCounter(None)))
