"""The paper's task families (and the user's `custom`), by base task name."""

from ct5x.errors import UserInputError
from ct5x_tasks import clip, hoc, mednli, ner, radqa, stigma
from ct5x_tasks.custom import custom_family
from ct5x_tasks.family import Family
from ct5x_tasks.settings import custom_task_settings
from ct5x_tasks.suggest import nearest

FAMILIES: dict[str, Family] = {
    family.base: family
    for family in (
        mednli.FAMILY,
        radqa.FAMILY,
        clip.FAMILY,
        *stigma.FAMILIES,
        *hoc.FAMILIES,
        *ner.FAMILIES,
        custom_family("custom", custom_task_settings),
    )
}


def family_of_base(base: str) -> Family:
    """The family of a base task name; unknown names get the nearest ones suggested."""
    if base not in FAMILIES:
        raise UserInputError(f"unknown base task {base!r}{nearest(base, FAMILIES)}")
    return FAMILIES[base]
