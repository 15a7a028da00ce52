"""Errors that map to the CLI's exit codes (see ``harness.cli``)."""


class RecipeError(Exception):
    """Bad input (a recipe, a dataset, an argument); ``str()`` is the one line shown to the user."""


class EnvironmentNotReady(Exception):
    """The machine cannot run this yet: Docker engine unreachable, image missing, devices absent.
    ``str()`` is the one line shown, naming what is missing and how to fix it."""
