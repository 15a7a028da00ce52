"""The compliance checker's messages (multi-line, with its state dumped) as one line per failure,
naming the stream's line, the key and the rule.

Rules name themselves: each CHECK in the ruleset ends with ``# rule-name: what it requires``.
A requirement on occurrences (REQ) is named ``REQ EXACTLY_ONE`` etc., as the ruleset spells it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

_CHECK = re.compile(r"CHECK for '(?P<key>[^'\n]*)' failed in line (?P<index>\d+):\n[^\n]*\nfailed test: (?P<test>[^\n]*)")
_CHECK_RAISED = re.compile(r"Failed executing CHECK code:\n(?P<test>[^\n]*)\ntriggered by line:\n(?P<full>[^\n]*)")
_CODE_RAISED = re.compile(r"Failed executing code (?P<action>\w+) code triggered by line :\n(?P<full>[^\n]*)")
_END_FAILED = re.compile(r"failed test: (?P<test>[^\n]*)")
_END_RAISED = re.compile(r"Failed executing CHECK code:\n(?P<test>[^\n]*)")
_REQ = re.compile(r"Required (?P<req>\S+) occurrence of '(?P<key>[^'\n]*)' but found (?P<found>\d+)")
_VALUE_CHARS = 60


@dataclass
class Failure:
    line: int | None  # the stream's line number; None for the stream as a whole
    key: str | None
    rule: str
    detail: str = ""


def rule_of(test: str) -> tuple[str, str]:
    """``(name, what it requires)`` from ``expr  # name: requirement``; the expression itself
    when the rule has no name."""
    expr, _, comment = test.partition("  # ")
    name, _, requirement = comment.partition(": ")
    return (name.strip(), requirement.strip()) if name.strip() else (expr.strip(), "")


def _got(event: dict) -> str:
    """The line's value when it is a scalar (a window's whole tag would drown the line)."""
    value = event.get("value")
    if value is None or isinstance(value, (dict, list)):
        return ""
    text = json.dumps(value)  # quoted and escaped: the value is untrusted text
    return f"got {text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS] + '...'}"


def describe(recorded: list[tuple[str | None, str]], events: list[tuple[int, dict]], lines: list[str],
             *, occurrence_note: str = "") -> list[Failure]:
    """``recorded``: the checker's ``(key, message)``; ``events``: the stream's ``(lineno, event)``
    in the order the checker saw them, ``lines``: the text of each as the checker read it."""
    line_of_text = {text: i for i, text in reversed(list(enumerate(lines)))}
    out: list[Failure] = []
    for key, message in recorded:
        if m := _CHECK.match(message):
            index = int(m["index"])
            lineno, event = events[index] if index < len(events) else (None, {})
            name, requirement = rule_of(m["test"])
            out.append(Failure(lineno, m["key"], name, "; ".join(filter(None, (requirement, _got(event))))))
        elif m := _CHECK_RAISED.match(message):
            index = line_of_text.get(m["full"])
            name, requirement = rule_of(m["test"])
            out.append(Failure(events[index][0] if index is not None else None, key, name,
                               f"could not be evaluated on this line ({requirement or 'the rule raised'})"))
        elif m := _CODE_RAISED.match(message):
            index = line_of_text.get(m["full"])
            out.append(Failure(events[index][0] if index is not None else None, key, f"{m['action']} code",
                               "the ruleset's code raised on this line"))
        elif m := _REQ.match(message):
            out.append(Failure(None, m["key"], f"REQ {m['req']}",
                               f"found {m['found']}{occurrence_note}"))
        elif m := _END_RAISED.match(message):
            name, requirement = rule_of(m["test"])
            out.append(Failure(None, None, name, f"could not be evaluated at the end of the stream ({requirement})"))
        elif m := _END_FAILED.match(message):
            name, requirement = rule_of(m["test"])
            out.append(Failure(None, None, name, requirement))
        else:  # "No log lines detected", "Could not find config file: ...", and the like
            out.append(Failure(None, key, "checker", " ".join(message.split())))
    return out


def one_line_each(failures: list[Failure], name: str) -> list[str]:
    """One line per (key, rule): the first line it failed on, and how many more."""
    groups: dict[tuple[str | None, str], list[Failure]] = {}
    for failure in failures:
        groups.setdefault((failure.key, failure.rule), []).append(failure)
    ordered = sorted(groups.values(), key=lambda g: (g[0].line is None, g[0].line or 0))
    out = []
    for group in ordered:
        first = group[0]
        where = f"{name}:{first.line}" if first.line is not None else name
        subject = first.key if first.key is not None else "end of stream"
        more = f" (and {len(group) - 1} more line{'s' * (len(group) > 2)})" if len(group) > 1 else ""
        detail = f": {first.detail}" if first.detail else ""
        out.append(f"{where}: {subject}: rule {first.rule} failed{detail}{more}")
    return out
