"""Plain tables for the terminal and for pipes (``harness runs``), drawn by rich: no borders, one
line per row however long (a reason is never wrapped into a second line that scripts would
miscount), output that a closed pipe does not break."""
from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], stream: TextIO | None = None) -> None:
    """``columns`` are headers; ``name:>`` right-aligns that column (numbers)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.core.output import SafeStream

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        name, _, align = column.partition(":")
        table.add_column(name, justify="right" if align == ">" else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # cells are data, never rich markup
    out = SafeStream(stream or sys.stdout)
    # Wide enough that no row is cut or wrapped; rendered first so that the padding rich adds
    # after the last cell can go.
    console = Console(file=io.StringIO(), width=100_000, force_terminal=out.isatty(), highlight=False, emoji=False)
    console.print(table)
    out.write("".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines()))
