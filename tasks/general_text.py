"""A general-domain corpus for the demo's "general" model: local news articles.

It mirrors the clinical notes of tasks/synthetic_notes.py in everything but the domain: sections
with headers, numbers, lists, names of four kinds (sports teams, dishes, towns, market goods) each
used in the contexts of its kind, and a closing list of to-do sentences in the same wording as the
notes' plans ("Please follow up the ticket refunds in 2 weeks."). None of the notes' medical terms
or clinical wording occurs in it (tests/tasks/test_general_text.py checks). Seeded, so the same
seed writes the same bytes.

`write_general_corpus(path, seed, num_characters)` writes articles as JSONL (field "text") until
they hold as many characters as the clinical notes they stand beside.
"""

from __future__ import annotations

import pathlib
import random

from ct5x.jsonl import write_atomic

NAMES: dict[str, tuple[str, ...]] = {
    "team": ("falcons", "rovers", "comets", "pirates", "wolves", "hornets", "mariners", "rockets",
             "panthers", "titans", "ravens", "cougars", "stallions", "badgers", "vikings",
             "cyclones"),
    "dish": ("lasagna", "paella", "risotto", "goulash", "chowder", "casserole", "ratatouille",
             "gumbo", "moussaka", "enchiladas", "pierogi", "dumplings", "frittata", "curry",
             "brisket", "gnocchi"),
    "town": ("ashford", "brookville", "millbrook", "riverton", "oakdale", "fairhaven", "westfield",
             "kingsport", "lakewood", "stonebridge", "elmwood", "harborview", "pinecrest",
             "redmond", "clearwater", "northgate"),
    "good": ("wheat", "coffee", "copper", "timber", "cotton", "soybeans", "cocoa", "barley",
             "aluminum", "lumber", "oats", "rubber", "sugar", "wool", "tin", "corn"),
}
_CONTEXTS = {
    "team": (
        "the {name} beat the visitors {a} to {b}",
        "fans of the {name} filled the stadium",
        "the {name} signed a new coach on {day}",
        "the {name} lost {a} to {b} away",
        "tickets for the {name} game sold out",
    ),
    "dish": (
        "{name} with rice and beans was served at the fair",
        "the {name} recipe takes {minutes} minutes",
        "a chef baked {name} for {a} guests",
        "leftover {name} keeps for {b} days",
        "the {name} won first prize at the cook-off",
    ),
    "town": (
        "the council of {name} voted {a} to {b} on the budget",
        "{name} received {a} inches of rain",
        "roads near {name} were closed on {day}",
        "the library in {name} reopened",
        "{name} elected a new mayor",
    ),
    "good": (
        "{name} sold at {price} dollars a pound",
        "prices of {name} rose {a} percent",
        "the {name} harvest came in late",
        "exports of {name} fell {b} percent",
        "traders stocked up on {name} before {day}",
    ),
}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEATHER = ("sunny", "cloudy", "windy", "rainy", "foggy", "clear")
_EVENTS = ("a street fair", "a book sale", "a charity run", "a jazz concert", "a farmers market",
           "a chess tournament", "a film night")
_WHEN = ("in 1 week", "in 2 weeks", "in 3 days", "in one month", "within 48 hours",
         "after the holiday", "at the next meeting")
_TODO = (
    "Please follow up the {thing} {when}.",
    "Outstanding this week: the {thing}, to be reviewed {when}.",
    "The volunteers will coordinate the {thing} {when}.",
    "Remaining issue is the {thing}; revisit {when}.",
    "Make sure the {thing} is taken care of {when}.",
    "Call the box office about the {thing} {when}.",
)
_THINGS = ("ticket refunds", "parking permits", "bake sale", "roof repairs", "bus schedule",
           "school play", "park cleanup", "voter guide", "toy drive", "garden plots")


def _clause(rng: random.Random, kind: str) -> str:
    return rng.choice(_CONTEXTS[kind]).format(
        name=rng.choice(NAMES[kind]), a=rng.randint(1, 9), b=rng.randint(1, 9),
        day=rng.choice(_DAYS), minutes=rng.choice((20, 30, 45, 60, 90)),
        price=f"{rng.uniform(0.5, 9.5):.2f}")


def _sentence(clause: str) -> str:
    """A clause as a sentence, left in lower case: a capitalised name would be another token."""
    return clause + "."


def article(rng: random.Random) -> str:
    """One article: headline, weather, four news sections and a to-do list."""
    town = rng.choice(NAMES["town"])
    news = [_clause(rng, kind) for kind in rng.choices(sorted(NAMES), k=rng.randint(4, 6))]
    todo = [rng.choice(_TODO).format(thing=rng.choice(_THINGS), when=rng.choice(_WHEN))
            for _ in range(rng.randint(4, 7))]
    return "\n".join([
        f"HEADLINE: {rng.choice(_EVENTS)} draws crowds to {town}",
        (f"SUMMARY: {rng.randint(40, 900)} residents of {town} came out on {rng.choice(_DAYS)} "
        f"despite {rng.choice(_WEATHER)} weather. Organisers expect {rng.randint(2, 30)} more "
        f"events this year."),
        (f"WEATHER: {rng.choice(_WEATHER)}, high {rng.randint(40, 95)} low {rng.randint(20, 60)}, "
        f"wind {rng.randint(0, 25)} mph, humidity {rng.randint(20, 99)}%."),
        "SPORTS: " + _sentence(_clause(rng, "team")),
        "MARKETS:\n" + "\n".join(f"- {name} {rng.uniform(0.5, 9.5):.2f} dollars a pound"
                                 for name in rng.sample(NAMES["good"], 3)),
        "KITCHEN: " + _sentence(_clause(rng, "dish")),
        "TOWN NEWS: " + " ".join(_sentence(clause) for clause in news),
        "NEXT STEPS: " + " ".join(todo),
    ])


# Span corruption holds out every 20th document for validation: a corpus of fewer would have
# none to train on.
MIN_ARTICLES = 20


def write_general_corpus(path: str | pathlib.Path, seed: int, num_characters: int) -> int:
    """Write articles (JSONL, field "text") until they hold `num_characters` characters, and at
    least MIN_ARTICLES of them; returns how many. Written to a temporary name, then renamed."""
    rng = random.Random(seed)
    rows, size = [], 0
    while size < num_characters or len(rows) < MIN_ARTICLES:
        rows.append({"text": article(rng)})
        size += len(rows[-1]["text"])
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, rows)
    return len(rows)
