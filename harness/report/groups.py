"""The report's groups section: one row per group of repeats (``harness run --repeat``), with
n, mean +- sd and min-max of each number, the group's verdicts, and any member that did not
finish named in the row (a group is never judged on fewer members silently)."""
from __future__ import annotations

from pathlib import Path

from harness.results.groups import NUMBERS, GroupSummary, summarize
from harness.results.stats import GroupStats
from harness.store.group_repair import repaired
from harness.store.records import DamagedRecord, GroupRecord
from harness.store.runs import GroupStore

GROUP_NOTE = (
    "**Groups** (`harness run --repeat N`): runs of one recipe that differ only in `train.seed`. Each number is "
    "*mean ± sd (min–max)* over the members that finished (sd: sample standard deviation, n−1). Accuracy is "
    "judged by the **mean** against the reference, with the recipe's `tolerance.accuracy_points` widened by "
    "`tolerance.seed_spread_points` (default 1.0 point: PSPNet VOC numbers move by more than a point between "
    "seeds, mmsegmentation#1208). A fixed, stated term is used rather than the group's own sd because with "
    "a handful of members the sample sd is itself too uncertain to set a bar, and a group that happened to "
    "agree closely would be judged more strictly than one that scattered. fps is judged by the **median** "
    "(one slow member, e.g. a cold cache, does not decide the speed)."
)


def collect_groups(results_dir: Path, rows: list) -> tuple[list[GroupSummary], list[str]]:
    """The summaries of every readable group, and one line for each damaged group folder.
    ``rows``: the report's run rows (their results and recipes are reused)."""
    by_id = {row.run.run_id: row for row in rows}
    summaries, problems = [], []
    for group in GroupStore(results_dir).all():
        try:
            record = repaired(group, results_dir)
        except DamagedRecord as exc:
            problems.append(str(exc))
            continue
        summaries.append(summarize_group(record, by_id))
    return summaries, problems


def summarize_group(record: GroupRecord, by_id: dict) -> GroupSummary:
    """``by_id``: run id -> the report's row (``harness.report.readme.RunRow``) of at least the members."""
    members = [by_id[m.run_id] for m in record.members if m.run_id in by_id]
    results = {row.run.run_id: row.result for row in members if row.result is not None and row.state == "succeeded"}
    recipe = next((row.recipe for row in members if row.recipe), None)
    return summarize(record, results, recipe.reference if recipe else None)


def stats_cell(stats: GroupStats, digits: int) -> str:
    if stats.n == 0 or stats.mean is None:
        return "--"
    sd = f" ± {stats.sd:.{digits}f}" if stats.sd is not None else ""
    return f"{stats.mean:.{digits}f}{sd} ({stats.min:.{digits}f}–{stats.max:.{digits}f})"


def groups_table(summaries: list[GroupSummary], problems: list[str], missing: set[str]) -> list[str]:
    lines = [
        "| group | recipe | reference | n | fps | aAcc | mIoU | mAcc | members | plots |",
        "| --- | --- | --- | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for summary in summaries:
        cells = []
        for name in NUMBERS:
            verdict = next((v for v in summary.verdicts if v.metric == name), None)
            text = stats_cell(summary.stats[name], 3 if name == "fps" else 2)
            cells.append(f"{text} {verdict.status}" if verdict and verdict.status != "NONE" else text)
        members = ", ".join(f"`{m.run_id}` (seed {m.seed}, {m.state})" if m.run_id else f"seed {m.seed} ({m.state})"
                            for m in summary.members)
        lines.append(f"| `{summary.group_id}` | {summary.recipe} | {summary.reference.label if summary.reference else '--'} "
                     f"| {summary.finished} | " + " | ".join(cells) + f" | {summary.completeness()}: {members} "
                     f"| {_plot_links(summary, missing)} |")
    for problem in problems:
        lines.append(f"| damaged | -- | -- | -- | -- | -- | -- | -- | {problem} | -- |")
    return lines


def group_verdicts(summaries: list[GroupSummary]) -> list[str]:
    lines = ["| group | metric | measured | reference value | verdict | reason |", "| --- | --- | ---: | ---: | :---: | --- |"]
    for summary in summaries:
        for v in summary.verdicts:
            if v.status == "NONE":
                continue
            digits = 3 if v.metric == "fps" else 2
            measured = "--" if v.measured is None else f"{v.measured:.{digits}f}"
            reference = "--" if v.reference is None else f"{v.reference:.{digits}f}"
            lines.append(f"| `{summary.group_id}` | {v.metric} | {measured} | {reference} | {v.status} | "
                         f"{summary.completeness()}; {v.reason} |")
    return lines


def plots_dir(results_dir: Path, summary: GroupSummary) -> Path:
    return GroupStore(results_dir).groups_dir / summary.group_id / "plots"


GROUP_PLOTS = ("loss", "miou")


def plots_missing(results_dir: Path, summary: GroupSummary) -> bool:
    """A group with finished members whose plots were never drawn (an older harness, a group
    written by hand): the report names it; it never draws."""
    folder = plots_dir(results_dir, summary)
    return bool(summary.results) and not all((folder / f"{name}.png").is_file() for name in GROUP_PLOTS)


def _plot_links(summary: GroupSummary, missing: set[str]) -> str:
    if summary.group_id in missing:
        return f"missing (`harness plots {summary.group_id}`)"
    # the report lives in results/, the group's plots in results/groups/<id>/plots/
    return " ".join(f"[{name}](groups/{summary.group_id}/plots/{name}.png)" for name in GROUP_PLOTS
                    if summary.results) or "--"


def write_group_plots(results_dir: Path, summary: GroupSummary) -> list[Path]:
    from harness.report.group_plots import write_group_plots as draw

    return draw(summary, plots_dir(results_dir, summary)) if summary.results else []


def groups_section(summaries: list[GroupSummary], problems: list[str], missing: set[str]) -> list[str]:
    """``missing``: the ids of the groups whose plots are missing."""
    if not summaries and not problems:
        return []
    return ["## Groups", "", *groups_table(summaries, problems, missing), "", *group_verdicts(summaries), "",
            GROUP_NOTE, ""]
