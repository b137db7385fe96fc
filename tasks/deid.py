"""MIMIC de-identification spans `[**...**]` replaced by short tags, for MIMIC-T5 runs.

MIMIC-III marks each removed identifier as `[**<kind or surrogate>**]`, e.g. `[**First Name8
(NamePattern2) 123**]`, `[**Hospital1 18**]`, `[**2101-10-20**]`. MIMIC-T5 was pretrained on notes
whose spans were rewritten as tags, so its runs see tags too. The first rule below whose pattern
matches the span's content picks the tag; a span no rule matches becomes [Redacted].
"""

import re

_SPAN = re.compile(r"\[\*\*(.*?)\*\*\]", re.DOTALL)

# (tag, pattern searched in the span's content), first match wins; order matters where kinds
# overlap ("Hospital Unit Name" is a hospital, "MD Number" an identifier, "Doctor Last Name" a name).
DEID_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (tag, re.compile(pattern, re.IGNORECASE))
    for tag, pattern in (
        ("[Date]", r"^\s*\d[\d\s/\-]*$|\b(year|month|day|date|holiday)\b"),
        ("[Age]", r"\bage\b"),
        ("[Phone]", r"telephone|fax|pager|phone"),
        ("[Contact]", r"e-?mail|\burl\b|contact info"),
        ("[Hospital]", r"hospital|ward"),
        ("[ID]", r"number|social security|\bssn\b|\bmrn\b|record|serial"),
        ("[Name]", r"name|initials|doctor|attending|dictator|provider"),
        ("[Organization]", r"company|university|college"),
        ("[Location]", r"location|address|street|state|country|po box|county|zip"),
    )
)

DEFAULT_TAG = "[Redacted]"


def deid_tag(content: str) -> str:
    """The tag for one span's content (the text between `[**` and `**]`)."""
    for tag, pattern in DEID_RULES:
        if pattern.search(content):
            return tag
    return DEFAULT_TAG


def deidentify(text: str) -> str:
    """`text` with every `[**...**]` span replaced by its tag; other text is unchanged."""
    return _SPAN.sub(lambda match: deid_tag(match.group(1)), text)
