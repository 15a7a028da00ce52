"""Words that come from outside (the command line, a recipe, options recorded in a run or bundle)
and end up in a batch script, an ``sbatch``/``srun`` argument or a manifest: each is checked
against what it may be before anything is written, so no value can end a line or a quote.

A refusal is one line of bad input (exit 2) naming the field and what is expected.
"""
from __future__ import annotations

import re

from harness.core.errors import BadInput

# Slurm names (partitions, also comma-separated lists of them): what slurm.conf allows in practice.
SLURM_NAMES = re.compile(r"^[A-Za-z0-9_.-]{1,64}(,[A-Za-z0-9_.-]{1,64})*$")
# --gres: a comma-separated list of name[:type][:count] (sbatch(1)); "none" is a valid word too.
GRES = re.compile(r"^[A-Za-z0-9_.-]{1,64}(:[A-Za-z0-9_.-]{1,64}){0,2}(,[A-Za-z0-9_.-]{1,64}(:[A-Za-z0-9_.-]{1,64}){0,2})*$")
# An image reference: registry/name:tag@digest, ASCII only ('#' is enroot's registry separator).
IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@#+-]{0,254}$")


def checked(value: str, pattern: re.Pattern, field: str, expected: str) -> str:
    """``value`` if it is a whole match of ``pattern`` (ASCII only); else BadInput naming ``field``."""
    if not isinstance(value, str) or not value.isascii() or not pattern.fullmatch(value):
        raise BadInput(f"{field} {value!r}: expected {expected}")
    return value


def image_reference(value: str, field: str = "image") -> str:
    return checked(value, IMAGE_REFERENCE, field, "an image reference such as registry/name:tag (ASCII letters, "
                                                  "digits and ._/:@#+- only)")
