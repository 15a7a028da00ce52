"""Stored runs + recipe references -> ``results/README.md`` in the seed README's table format.

Everything is rebuilt from the run folders (their ``result.json``, or the logs when a result is
missing or stale), so the report never needs a rerun.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from harness.core.fileio import write_json_atomic, write_text_atomic
from harness.planning.recipe import METRICS, PublishedRow, Recipe, BadInput, load_recipe
from harness.planning.shipped import RECIPES_DIR
from harness.planning.stored_recipe import recipe_of
from harness.results.run_result import build_result
from harness.store.records import DamagedRecord, PlanRecord, ProvenanceRecord, RunResult, RunStatus, Verdict
from harness.store.runs import RunDir, RunStore, utc_now

DEFAULT_RECIPES_DIR = RECIPES_DIR
SEED_REFERENCE_RECIPES = ("gpu_full_8p", "full_8p")


@dataclass
class RunRow:
    run: RunDir
    state: str
    recipe: Recipe | None
    result: RunResult | None
    status: RunStatus | None = None
    problem: str | None = None  # one line: why this run is listed as damaged
    provenance: ProvenanceRecord | None = None
    plots: list[Path] = field(default_factory=list)  # the run's plot files, drawn when it was recorded


@dataclass
class Report:
    rows: list[RunRow]
    references: list[PublishedRow] = field(default_factory=list)
    groups: list = field(default_factory=list)  # harness.results.groups.GroupSummary
    group_problems: list[str] = field(default_factory=list)  # one line per damaged group folder
    groups_without_plots: set[str] = field(default_factory=set)  # group ids (see plots_missing)


def collect_run(run: RunDir, recipes: dict[str, Recipe] | None = None) -> RunRow:
    """One run for the report, every record read once; a run whose records cannot be read
    becomes a 'damaged' row. ``recipes``: recipes already parsed in this report, by their text
    (the runs of one recipe store the same recipe.yaml)."""
    try:
        records = run.records()
    except DamagedRecord as exc:
        return RunRow(run, "damaged", None, None, None, str(exc))
    status = records.status
    state = run.effective_state(status)
    recipes = {} if recipes is None else recipes
    try:
        recipe = recipes.get(records.recipe_text) or recipe_of(run, records.recipe_text)
    except DamagedRecord as exc:
        return RunRow(run, "damaged", None, None, status, str(exc))
    recipes[records.recipe_text] = recipe
    result = records.result
    if result is None and state not in ("running", "created"):
        plan = records.plan or run.read(PlanRecord)
        result = build_result(run, recipe, plan.world_size if plan else recipe.device.world_size)
    return RunRow(run, state, recipe, result, status, provenance=records.provenance,
                  plots=sorted(run.plots_dir.glob("*.png")))


def reference_rows(recipes: list[Recipe]) -> list[PublishedRow]:
    """Every published row the recipes name, once each, in the order first seen."""
    seen: dict[tuple[str, str], PublishedRow] = {}
    for recipe in recipes:
        for row in [*recipe.published, recipe.reference]:
            if all(getattr(row, m) is None for m in ("fps", *METRICS)):
                continue  # nothing to compare against (e.g. an ingested CPU work_dir)
            seen.setdefault((row.label, row.source), PublishedRow(**{k: getattr(row, k) for k in PublishedRow.model_fields}))
    return list(seen.values())


def shipped_recipes(recipes_dir: Path) -> list[Recipe]:
    recipes = []
    for name in SEED_REFERENCE_RECIPES:
        path = recipes_dir / f"{name}.yaml"
        if path.is_file():
            try:
                recipes.append(load_recipe(path).recipe)
            except BadInput:
                continue
    return recipes


def collect(results_dir: Path, recipes_dir: Path = DEFAULT_RECIPES_DIR) -> Report:
    from harness.report.groups import collect_groups, plots_missing

    parsed: dict[str, Recipe] = {}
    rows = [collect_run(run, parsed) for run in RunStore(results_dir).all()]
    recipes = shipped_recipes(recipes_dir) + [row.recipe for row in rows if row.recipe]
    groups, problems = collect_groups(results_dir, rows)
    without = {g.group_id for g in groups if plots_missing(Path(results_dir), g)}
    return Report(rows=rows, references=reference_rows(recipes), groups=groups, group_problems=problems,
                  groups_without_plots=without)


def _num(value: float | None, digits: int) -> str:
    return "--" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None, digits: int, verdict: Verdict | None) -> str:
    text = _num(value, digits)
    if verdict and verdict.status != "NONE":
        text = f"{text} {verdict.status}"
    return text


def device_label(row: RunRow) -> str:
    if row.recipe is None:
        return f"? ({row.run.run_id})"
    return f"{row.recipe.device.label} {row.recipe.name} `{row.run.run_id}`"


def main_table(report: Report) -> list[str]:
    lines = [
        "| device | fps |  aAcc |  mIoU | mAcc |",
        "| :------: | :------: | :------: | :------: | :------: |",
    ]
    for ref in report.references:
        cells = [_num(ref.fps, 3) if ref.fps else "", *(_num(getattr(ref, m), 2) for m in METRICS)]
        lines.append(f"|{ref.label} (reference)| " + " | ".join(cells) + " |")
    for row in report.rows:
        if row.state not in ("succeeded",):
            label = f"{device_label(row)} ({row.state})"
        else:
            label = device_label(row)
        result = row.result
        if result is None:
            cells = ["--"] * (1 + len(METRICS))
        else:
            compared = result.compared_metrics()
            cells = [_cell(result.fps, 3, result.verdict("fps"))]
            cells += [_cell(getattr(compared, m), 2, result.verdict(m)) for m in METRICS]
        lines.append(f"|{label}| " + " | ".join(cells) + " |")
    return lines


def verdict_table(report: Report) -> list[str]:
    lines = [
        "| run | reference | metric | measured | reference value | verdict | reason |",
        "| --- | --- | --- | ---: | ---: | :---: | --- |",
    ]
    for row in report.rows:
        if not row.result or row.recipe is None:
            continue
        for verdict in row.result.verdicts:
            if verdict.status == "NONE":
                continue
            digits = 3 if verdict.metric == "fps" else 2
            lines.append(
                f"| `{row.run.run_id}` | {row.recipe.reference.label} | {verdict.metric} | "
                f"{_num(verdict.measured, digits)} | {_num(verdict.reference, digits)} | "
                f"{verdict.status} | {verdict.reason} |"
            )
    return lines


def runs_table(report: Report) -> list[str]:
    lines = [
        "| run | recipe | state | iterations | mean s/iter | fps (seed definition) | evaluations | compared | dataset | plots | where the numbers come from |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for row in report.rows:
        result = row.result
        reason = row.status.reason if row.status else None
        state = row.state + (f" ({reason})" if reason else "")
        if result is None:
            lines.append(f"| `{row.run.run_id}` | {row.recipe.name if row.recipe else '?'} | {state} | -- | -- | -- | -- | -- "
                         f"| -- | {_plot_links(row)} | {row.problem or '--'} |")
            continue
        sources = result.sources
        where = result.parse_error or row.problem or "; ".join(f"{k}: {v}" for k, v in sorted(sources.items())[:4])
        lines.append(
            f"| `{row.run.run_id}` | {row.recipe.name if row.recipe else '?'} | {state} | "
            f"{result.iterations if result.iterations is not None else '--'} | "
            f"{_num(result.mean_iter_time_s, 4)} | {_num(result.fps_seed_definition, 3)} | "
            f"{result.evaluations_count if result.evaluations_count is not None else '--'} | {result.compared} | "
            f"{_dataset_cell(result)} | {_plot_links(row)} | {where} |"
        )
    return lines


def _dataset_cell(result: RunResult) -> str:
    fingerprint = result.provenance.dataset_fingerprint
    if not fingerprint:
        return "--"
    skipped = " (check skipped)" if result.provenance.dataset_check_skipped else ""
    return f"`{fingerprint[:12]}`{skipped}"


def _plot_links(row: RunRow) -> str:
    if not row.plots and plots_expected(row):
        return f"missing (`harness plots {row.run.run_id}`)"
    return " ".join(f"[{p.stem}](runs/{row.run.run_id}/plots/{p.name})" for p in row.plots) or "--"


def plots_expected(row: RunRow) -> bool:
    """A run whose result has logged windows has plots, drawn when it was recorded."""
    return bool(row.result and row.result.train)


def runs_without_plots(report: Report) -> list[RunRow]:
    return [row for row in report.rows if plots_expected(row) and not row.plots]


def missing_plots_note(report: Report) -> list[str]:
    """The report never draws (``run`` and ``ingest`` do): say what lacks plots and how to draw it."""
    runs = len(runs_without_plots(report))
    parts = [f"{runs} run(s)"] if runs else []
    parts += [f"{len(report.groups_without_plots)} group(s)"] if report.groups_without_plots else []
    if not parts:
        return []
    return [f"{' and '.join(parts)} have no plots (stored without them, e.g. by an older harness; the report "
            "never draws): `harness plots --missing` draws them, or `harness plots ID...` the ones named.", ""]


def references_section(report: Report) -> list[str]:
    lines = ["| row | source | conditions |", "| --- | --- | --- |"]
    for ref in report.references:
        lines.append(f"| {ref.label} | {ref.source} | {ref.conditions or '--'} |")
    return lines


FPS_NOTE = (
    "**fps** (harness definition): global images/s = batch per device x devices / mean of the logged "
    "training `time` values (seconds per iteration, data loading included), excluding the first logged "
    "window (warm-up). **fps (seed definition)**: what the Ascend scripts report as `ActualFPS`: the "
    "*peak* logged window's batch/time (their `fps:` field), times the number of cards; it is optimistic "
    "by construction. Accuracy cells show the evaluation named in *compared*: `best` (the seed's "
    "definition: the best of all evaluations) or `final` (the last one)."
)


def comparisons_section(report: Report) -> list[str]:
    """For every reference label with finished runs on two (or more) device kinds: the first two
    kinds side by side, as ``harness compare`` prints them."""
    from harness.report.compare import Side, compare_sides, render_markdown

    by_label: dict[str, dict[str, list[RunRow]]] = {}
    for row in report.rows:
        if row.recipe and row.result and row.state == "succeeded":
            kinds = by_label.setdefault(row.recipe.reference.label, {})
            kinds.setdefault(row.recipe.device.kind, []).append(row)
    lines: list[str] = []
    for label, kinds in by_label.items():
        if len(kinds) < 2:
            continue
        (ka, ra), (kb, rb) = sorted(kinds.items())[:2]
        sides = [Side(f"{label} on {kind.upper()}", "label", [r.run for r in rs], [r.result for r in rs], rs[0].recipe)
                 for kind, rs in ((ka, ra), (kb, rb))]
        lines += render_markdown(compare_sides(*sides), heading="###")
    return ["## Comparisons", "", *lines] if lines else []


def render(report: Report) -> str:
    from harness.report.groups import groups_section

    parts = [
        "# Results",
        "",
        f"Written by `harness report` at {utc_now()} from {len(report.rows)} stored run(s) in `results/runs/`. "
        "Each cell is followed by its verdict against the run's reference row (PASS / WARN / FAIL / MISSING).",
        "",
        "### PSPNET",
        "",
        *main_table(report),
        "",
        FPS_NOTE,
        "",
        "## Verdicts",
        "",
        *verdict_table(report),
        "",
        "## Runs",
        "",
        *runs_table(report),
        "",
        *missing_plots_note(report),
        *groups_section(report.groups, report.group_problems, report.groups_without_plots),
        *comparisons_section(report),
        "## Reference rows",
        "",
        *references_section(report),
        "",
    ]
    return "\n".join(parts)


SUMMARY_FIELDS = (
    "run_id", "recipe", "device", "devices", "nodes", "state", "reason", "iterations", "fps", "fps_seed_definition",
    "mean_iter_time_s", "compared", "aAcc", "mIoU", "mAcc", "verdict_fps", "verdict_aAcc", "verdict_mIoU",
    "verdict_mAcc", "reference", "reference_source", "image_id", "dataset_fingerprint", "harness_commit",
)


def summary_rows(report: Report) -> list[dict]:
    rows = []
    for row in report.rows:
        result = row.result
        compared = result.compared_metrics() if result else None
        host = row.provenance
        rows.append({
            "run_id": row.run.run_id,
            "recipe": row.recipe.name if row.recipe else None,
            "device": row.recipe.device.kind if row.recipe else None,
            "devices": row.recipe.device.world_size if row.recipe else None,  # every rank of every node
            "nodes": row.recipe.device.nodes if row.recipe else None,
            "state": row.state,
            "reason": row.problem or (row.status.reason if row.status else None),
            "iterations": result.iterations if result else None,
            "fps": result.fps if result else None,
            "fps_seed_definition": result.fps_seed_definition if result else None,
            "mean_iter_time_s": result.mean_iter_time_s if result else None,
            "compared": result.compared if result else None,
            **{m: getattr(compared, m) if compared else None for m in METRICS},
            **{f"verdict_{m}": _status_of(result.verdict(m)) if result else None for m in ("fps", *METRICS)},
            "reference": row.recipe.reference.label if row.recipe else None,
            "reference_source": row.recipe.reference.source if row.recipe else None,
            "image_id": result.provenance.image_id if result else None,
            "dataset_fingerprint": result.provenance.dataset_fingerprint if result else None,
            "harness_commit": host.harness_commit if host else None,
        })
    return rows


def _status_of(verdict: Verdict | None) -> str | None:
    return verdict.status if verdict else None


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(results_dir: Path, recipes_dir: Path = DEFAULT_RECIPES_DIR) -> tuple[Path, Report]:
    report = collect(results_dir, recipes_dir)
    path = Path(results_dir) / "README.md"
    rows = summary_rows(report)
    write_json_atomic(Path(results_dir) / "summary.json", {
        "generated": utc_now(),
        "references": [ref.model_dump() for ref in report.references],
        "runs": rows,
        "groups": [summary.to_dict() for summary in report.groups],
    })
    write_text_atomic(Path(results_dir) / "summary.csv", _csv(rows))
    write_text_atomic(path, render(report))
    return path, report
