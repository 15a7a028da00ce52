"""Setting one value by a dotted key (``train.iterations``, ``train_pipeline.2.scale``) in nested
mappings and lists: the recipe's ``--set`` and the worker's config overrides use the same walk."""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


class DottedKeyError(ValueError):
    """A dotted key that runs into something that is neither a mapping nor (by index) a list."""

    def __init__(self, dotted: str, key: str):
        super().__init__(f"{dotted}: '{key}' is not a mapping")
        self.dotted, self.key = dotted, key


def set_dotted(root: MutableMapping, dotted: str, value: Any) -> None:
    """``root[a][b][c] = value`` for ``a.b.c``; missing (or null) mappings on the way are made,
    list items are addressed by their index. A list replacing a tuple becomes a tuple: YAML has
    none, and mmseg asserts them (crop_size, scale)."""
    keys = dotted.split(".")
    node: Any = root
    for key in keys[:-1]:
        node = _child(node, key, dotted, create=True)
    last = keys[-1]
    old = _child(node, last, dotted, create=False)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _child(node: Any, key: str, dotted: str, *, create: bool) -> Any:
    if isinstance(node, list):
        try:
            return node[int(key)]
        except (ValueError, IndexError):
            raise DottedKeyError(dotted, key) from None
    if not _is_mapping(node):
        raise DottedKeyError(dotted, key)
    child = node.get(key)
    if child is None and create:
        node[key] = {}
        child = node[key]  # re-read: mmengine's ConfigDict converts what it stores
    if create and not (isinstance(child, list) or _is_mapping(child)):
        raise DottedKeyError(dotted, key)
    return child


def _is_mapping(node: Any) -> bool:
    # mmengine's Config reads and writes like a mapping without being registered as one.
    return isinstance(node, MutableMapping) or (hasattr(node, "get") and hasattr(node, "__setitem__"))
