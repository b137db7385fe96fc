"""MIMIC de-identification spans `[**...**]` rewritten as the tags MIMIC-T5 saw, for its runs.

MIMIC marks each removed identifier as `[**<kind or surrogate>**]`, e.g. `[**First Name8
(NamePattern2) 123**]`, `[**Hospital1 18**]`, `[**2101-10-20**]`. The study (after the Clinical-T5
authors' preprocessing) rewrites them with this rule, reproduced exactly:
1. the first kind in `DEID_TAGS`, in that order, found in the span's content (as written or in
   lower case) gives the tag: `Hospital1 18` -> `[Company]`, `Wardname` -> `[Name]` (its lower
   case contains `name`, listed before `Wardname`);
2. otherwise a content with three `-`-separated parts is a date and stays as text
   (`2101-10-20`); digits only -> `[Reg#]`; digits with `-` or `/` stay as text (`10-20`);
   a content naming a month stays as text; an empty content is removed; `Ethnicity` stays;
3. anything else is an error naming its kind (its letters, digits removed), never its text.
The pieces around each span are then joined with one space each, as the study joins them, so a
space already beside a span doubles (`a [**X**], b` -> `a  [X] , b`); empty pieces are left out.
Spans do not cross lines.
"""

import re

from ct5x.errors import UserInputError

_SPAN = re.compile(r"\[\*\*(.*?)\*\*\]")

# (kind, tag), first match wins. The order is the study's, and it decides overlapping kinds.
DEID_TAGS: tuple[tuple[str, str], ...] = (
    ("First Name", "[Name]"),
    ("Last Name", "[Name]"),
    ("Clip Number (Radiology)", "[Reg#]"),
    ("Hospital", "[Company]"),
    ("Numeric Identifier", "[Reg#]"),
    ("Location", "[LOC]"),
    ("Initials", "[Name]"),
    ("Known lastname", "[Name]"),
    ("Known firstname", "[Name]"),
    ("Age over 90", "[Age]"),
    ("Medical Record Number", "[Reg#]"),
    ("Telephone/Fax", "[#]"),
    ("Name", "[Name]"),
    ("Street Address", "[LOC]"),
    ("Date Range", "[DR]"),
    ("Date range", "[DR]"),
    ("Serial Number", "[#]"),
    ("Social Security Number", "[#]"),
    ("State", "[State]"),
    ("E-mail address", "[CI]"),
    ("Company", "[Company]"),
    ("Pager number", "[#]"),
    ("Country", "[Country]"),
    ("MD Number", "[Reg#]"),
    ("Wardname", "[LOC]"),
    ("College", "[Company]"),
    ("Apartment Address", "[LOC]"),
    ("URL", "[URL]"),
    ("CC Contact Info", "[CI]"),
    ("Attending Info", "[CI]"),
    ("Job Number", "[Reg#]"),
    ("Year", "[YR]"),
    ("Month", "[MO]"),
    ("Day", "[DAY]"),
    ("Holiday", "[DAY]"),
    ("Unit Number", "[Reg#]"),
    ("PO Box", "[LOC]"),
    ("Dictator Info", "[CI]"),
    ("Provider Number", "[#]"),
)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

# Contents the study keeps as text although no kind names them.
KEPT_KINDS = ("Ethnicity",)


def span_kind(content: str) -> str:
    """What a span's content says about its kind, without its digits (safe to show)."""
    return " ".join(re.sub(r"\d+", " ", content).split())


def deid_tag(content: str) -> str:
    """The replacement of one span's content (the text between `[**` and `**]`)."""
    for kind, tag in DEID_TAGS:
        if kind in content or kind.lower() in content:
            return tag
    if len(content.split("-")) == 3:
        return content
    if content.strip().isnumeric():
        return "[Reg#]"
    if content.replace("-", "").replace("/", "").isnumeric():
        return content
    if any(month in content for month in MONTHS):
        return content
    if not content.strip():
        return ""
    if any(kind in content for kind in KEPT_KINDS):
        return content
    raise UserInputError(
        f"a de-identification span of kind {span_kind(content)!r} has no tag; known kinds: "
        f"{', '.join(kind for kind, _ in DEID_TAGS)}"
    )


def deidentify(text: str) -> str:
    """`text` with every `[**...**]` span replaced; text without spans is returned unchanged."""
    pieces, last = [], 0
    for match in _SPAN.finditer(text):
        pieces += [text[last : match.start()], deid_tag(match.group(1))]
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return " ".join(piece for piece in pieces if piece != "")
