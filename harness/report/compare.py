"""``harness compare A B``: two runs, two groups or two reference labels, side by side.

Each number (fps, aAcc, mIoU, mAcc; accuracy is the evaluation the recipe compares) with its
delta (B - A) and whether the delta exceeds the noise: with at least two values on each side,
Welch's t-test (``harness.results.stats``, alpha 0.05); otherwise A's recipe tolerance (accuracy: more
than ``accuracy_points``; fps: more than ``1 - fps_ratio`` relative). Then the provenance that
might explain a difference (image ID, package versions, CANN/driver, dataset fingerprint) and a
unified diff of the two resolved mmengine configs (the first run of each side).

A side is a run id, a group id (its finished members) or a reference label (every run whose
recipe's ``reference.label`` is it). The JSON form is ``CompareReport``; its schema is published
as ``docs/schemas/compare.schema.json``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from harness.core.errors import BadInput
from harness.planning.recipe import Recipe
from harness.results.groups import NUMBERS, member_values
from harness.results.stats import DEFAULT_ALPHA, describe, welch_t_test
from harness.store.group_repair import repaired
from harness.store.records import DamagedRecord, RunResult
from harness.store.runs import GROUP_ID_PATTERN, RUN_ID_PATTERN, GroupStore, RunDir, RunStore

PACKAGES = ("torch", "torch_npu", "mmcv", "mmcv-lite", "mmengine", "mmsegmentation", "mmseg", "numpy")
COMPARE_VERSION = 1


class CompareError(BadInput):
    """A side that names no run, group or label with finished runs."""


class SideSummary(BaseModel):
    name: str
    kind: Literal["run", "group", "label"]
    runs: list[str]


class NumberRow(BaseModel):
    metric: str
    a_mean: float | None
    a_sd: float | None
    a_n: int
    b_mean: float | None
    b_sd: float | None
    b_n: int
    delta: float | None
    test: Literal["welch", "tolerance", "none"]
    p_value: float | None = None
    threshold: float | None = None  # the tolerance the delta was held against (test 'tolerance')
    exceeds_noise: bool
    reason: str


class ProvenanceRow(BaseModel):
    field: str
    a: list[str]
    b: list[str]
    differs: bool


class CompareReport(BaseModel):
    """What ``harness compare A B --json`` prints."""

    FILE: ClassVar[str] = "compare.json"  # its schema: docs/schemas/compare.schema.json
    compare_version: Literal[1] = COMPARE_VERSION
    a: SideSummary
    b: SideSummary
    alpha: float
    numbers: list[NumberRow]
    provenance: list[ProvenanceRow]
    config_diff: str | None = Field(description="unified diff of the resolved configs; '' when equal, null when a side has none")


@dataclass
class Side:
    name: str
    kind: str
    runs: list[RunDir]
    results: list[RunResult]
    recipe: Recipe | None


def _finished(run: RunDir, damaged: list[str]) -> RunResult | None:
    """The run's result when it finished; a damaged record is noted in ``damaged`` (one line
    naming the file), so that an empty side says why rather than "no finished run"."""
    try:
        if run.status().state != "succeeded":
            return None
        return run.result()
    except DamagedRecord as exc:
        damaged.append(" ".join(str(exc).split()))
        return None


def resolve_side(results_dir, name: str) -> Side:
    from harness.planning.stored_recipe import recipe_of

    store = RunStore(results_dir)
    if RUN_ID_PATTERN.match(name):
        runs, kind = [store.get(name)], "run"
    elif GROUP_ID_PATTERN.match(name):
        record = repaired(GroupStore(results_dir).get(name), results_dir)
        runs, kind = [store.get(m.run_id) for m in record.finished_members()], "group"
    else:
        runs, kind = [], "label"
        for run in store.all():
            try:
                if recipe_of(run).reference.label == name:
                    runs.append(run)
            except DamagedRecord:
                continue
    damaged: list[str] = []
    pairs = [(run, _finished(run, damaged)) for run in runs]
    pairs = [(run, result) for run, result in pairs if result is not None]
    what = {"run": "run", "group": "group", "label": "reference label"}[kind]
    if damaged and (kind == "run" or not pairs):
        more = f" (and {len(damaged) - 1} more damaged run(s))" if len(damaged) > 1 else ""
        raise CompareError(f"compare: {what} {name!r}: {damaged[0]}{more}")
    if not pairs:
        raise CompareError(f"compare: {what} {name!r}: no finished run with a result in {store.runs_dir}")
    recipe = recipe_of(pairs[0][0])
    return Side(name, kind, [r for r, _ in pairs], [res for _, res in pairs], recipe)


def compare_numbers(a: Side, b: Side, alpha: float = DEFAULT_ALPHA) -> list[NumberRow]:
    tolerance = a.recipe.reference.tolerance if a.recipe else None
    rows = []
    for metric in NUMBERS:
        xs, ys = member_values(a.results, metric), member_values(b.results, metric)
        sa, sb = describe(xs), describe(ys)
        delta = sb.mean - sa.mean if sa.mean is not None and sb.mean is not None else None
        base = dict(metric=metric, a_mean=sa.mean, a_sd=sa.sd, a_n=sa.n, b_mean=sb.mean, b_sd=sb.sd, b_n=sb.n, delta=delta)
        if delta is None:
            rows.append(NumberRow(**base, test="none", exceeds_noise=False, reason="a side has no value"))
        elif sa.n >= 2 and sb.n >= 2:
            test = welch_t_test(xs, ys, alpha=alpha)
            reason = (f"Welch's t = {test.t:.2f}, p = {test.p:.3g} {'<' if test.significant else '>='} {alpha}"
                      if test.p is not None else f"no test: {test.reason}")
            rows.append(NumberRow(**base, test="welch", p_value=test.p, exceeds_noise=test.significant, reason=reason))
        elif tolerance is None:
            rows.append(NumberRow(**base, test="none", exceeds_noise=False, reason="no recipe tolerance to judge by"))
        elif metric == "fps":
            limit = (1 - tolerance.fps_ratio) * sa.mean
            rows.append(NumberRow(**base, test="tolerance", threshold=limit, exceeds_noise=abs(delta) > limit,
                                  reason=f"|delta| {abs(delta):.3f} vs {1 - tolerance.fps_ratio:.0%} of A ({limit:.3f})"))
        else:
            limit = tolerance.accuracy_points
            rows.append(NumberRow(**base, test="tolerance", threshold=limit, exceeds_noise=abs(delta) > limit,
                                  reason=f"|delta| {abs(delta):.2f} vs accuracy_points {limit:.2f}"))
    return rows


def provenance_values(run: RunDir, result: RunResult) -> dict[str, str]:
    """The facts of one run that might explain a difference, as text."""
    env = run.worker_env()
    host = run.provenance()
    facts: dict[str, Any] = {
        "image_id": result.provenance.image_id or (host.image.image_id if host and host.image else None),
        "dataset_fingerprint": result.provenance.dataset_fingerprint,
        "device": f"{result.device.kind}x{result.device.count}",
        "harness_commit": (env.harness_commit if env else None) or (host.harness_commit if host else None),
    }
    packages = {**(host.packages if host else {}), **(env.packages if env else {})}
    for name in PACKAGES:
        if name in packages:
            facts[f"package {name}"] = packages[name]
    npu = (env.npu or {}) if env else {}
    ascend = (env.ascend_versions or {}) if env else {}
    for key in ("cann", "driver", "soc", "name"):
        value = npu.get(key) or ascend.get(key)
        if value:
            facts[f"npu {key}"] = value
    for key, value in ascend.items():
        facts.setdefault(f"ascend {key}", value)
    if env and env.cuda:
        facts["cuda"] = env.cuda
    return {k: str(v) for k, v in facts.items() if v is not None}


def compare_provenance(a: Side, b: Side) -> list[ProvenanceRow]:
    va = [provenance_values(r, res) for r, res in zip(a.runs, a.results)]
    vb = [provenance_values(r, res) for r, res in zip(b.runs, b.results)]
    keys = list(dict.fromkeys(k for facts in va + vb for k in facts))
    rows = []
    for key in keys:
        xa = sorted({f.get(key, "--") for f in va})
        xb = sorted({f.get(key, "--") for f in vb})
        rows.append(ProvenanceRow(field=key, a=xa, b=xb, differs=xa != xb))
    return rows


def config_diff(a: Side, b: Side) -> str | None:
    ta, tb = a.runs[0].resolved_config_text(), b.runs[0].resolved_config_text()
    if ta is None or tb is None:
        return None
    return "".join(difflib.unified_diff(ta.splitlines(keepends=True), tb.splitlines(keepends=True),
                                        fromfile=f"{a.runs[0].run_id}/resolved_config.py",
                                        tofile=f"{b.runs[0].run_id}/resolved_config.py"))


def compare_sides(a: Side, b: Side, alpha: float = DEFAULT_ALPHA) -> CompareReport:
    return CompareReport(
        a=SideSummary(name=a.name, kind=a.kind, runs=[r.run_id for r in a.runs]),  # type: ignore[arg-type]
        b=SideSummary(name=b.name, kind=b.kind, runs=[r.run_id for r in b.runs]),  # type: ignore[arg-type]
        alpha=alpha, numbers=compare_numbers(a, b, alpha), provenance=compare_provenance(a, b),
        config_diff=config_diff(a, b),
    )


def _n(value: float | None, digits: int) -> str:
    return "--" if value is None else f"{value:.{digits}f}"


def _side_cell(mean, sd, n, digits) -> str:
    text = _n(mean, digits)
    if sd is not None:
        text += f" ± {sd:.{digits}f}"
    return f"{text} (n={n})" if n != 1 else text


def render_markdown(report: CompareReport, *, heading: str = "#") -> list[str]:
    a, b = report.a, report.b
    lines = [
        f"{heading} Compare: {a.name} vs {b.name}", "",
        f"A = {a.kind} `{a.name}` ({len(a.runs)} run(s)); B = {b.kind} `{b.name}` ({len(b.runs)} run(s)). "
        f"delta = B − A; noise: Welch's t (alpha {report.alpha}) when both sides have ≥ 2 runs, else A's recipe tolerance.",
        "", "| number | A | B | delta | beyond noise | why |", "| --- | ---: | ---: | ---: | :---: | --- |",
    ]
    for row in report.numbers:
        digits = 3 if row.metric == "fps" else 2
        lines.append(f"| {row.metric} | {_side_cell(row.a_mean, row.a_sd, row.a_n, digits)} | "
                     f"{_side_cell(row.b_mean, row.b_sd, row.b_n, digits)} | "
                     f"{'--' if row.delta is None else f'{row.delta:+.{digits}f}'} | "
                     f"{'YES' if row.exceeds_noise else 'no'} | {row.reason} |")
    lines += ["", f"{heading}# Provenance", "", "| field | A | B | differs |", "| --- | --- | --- | :---: |"]
    for row in report.provenance:
        lines.append(f"| {row.field} | {', '.join(row.a)} | {', '.join(row.b)} | {'**yes**' if row.differs else ''} |")
    lines += ["", f"{heading}# Resolved config diff (first run of each side)", ""]
    if report.config_diff is None:
        lines.append("(a side has no resolved_config.py: ingested from logs made elsewhere)")
    elif not report.config_diff:
        lines.append("(identical)")
    else:
        lines += ["```diff", report.config_diff.rstrip("\n"), "```"]
    return lines + [""]


def side_results(side: Side) -> list[dict]:
    return [r.model_dump(mode="json") for r in side.results]
