"""Task variant names: `<base>[_flan][_deid][_site_<site>][_fold<k>[_pct<p>]]`.

- `_flan`: the FLAN instruction instead of the T5 prefix;
- `_deid`: MIMIC `[**...**]` spans replaced by tags (MIMIC-derived tasks only, for MIMIC-T5);
- `_site_<site>`: the same task read from a site's directory (Stigma's out-of-domain hospital);
- `_fold<k>`: fold k (0-4) of folds.json: its train and validation parts, the original test;
- `_pct<p>`: p percent of fold k's training part (p = 1, 5, 25; 0.5 is written `0p5`).
Every name starts with its base name; what scores a task comes from its facts (`catalog.TaskInfo`),
never from its name.
"""

import dataclasses

NUM_FOLDS = 5


def fraction_key(fraction: float) -> str:
    """The key of a fraction in folds.json: 0.01 -> '0.01'."""
    return f"{fraction:g}"


def percent_label(fraction: float) -> str:
    """0.01 -> '1', 0.005 -> '0p5': a fraction as it appears in a task name."""
    return f"{fraction * 100:g}".replace(".", "p")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One registered task: a base task and the options that select prompt, text and data."""

    base: str
    flan: bool = False
    deid: bool = False
    site: str | None = None
    fold: int | None = None
    fraction: float | None = None

    def __post_init__(self):
        if self.fold is not None and not 0 <= self.fold < NUM_FOLDS:
            raise ValueError(f"fold must be in 0-{NUM_FOLDS - 1}, got {self.fold}")
        if self.fraction is not None and self.fold is None:
            raise ValueError("a training fraction needs a fold")

    @property
    def name(self) -> str:
        """The registered task name."""
        parts = [self.base]
        if self.flan:
            parts.append("flan")
        if self.deid:
            parts.append("deid")
        if self.site is not None:
            parts.append(f"site_{self.site}")
        if self.fold is not None:
            parts.append(f"fold{self.fold}")
        if self.fraction is not None:
            parts.append(f"pct{percent_label(self.fraction)}")
        return "_".join(parts)


def task_name(
    base: str,
    *,
    flan: bool = False,
    deid: bool = False,
    site: str | None = None,
    fold: int | None = None,
    fraction: float | None = None,
) -> str:
    """The registered name of a variant, e.g. task_name('mednli', flan=True, fold=2)."""
    return Variant(base, flan, deid, site, fold, fraction).name
