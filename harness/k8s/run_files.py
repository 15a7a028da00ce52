"""A Kubernetes run's folder in the run store, and the script every node's pod runs.

No harness process watches a Kubernetes job, so the pods keep the run folder themselves: node 0
copies the run's files (recipe, plan, job, configs: shipped in a ConfigMap) into
``runs/<run-id>/`` on the results PVC and records ``status.json`` (running, then succeeded or
failed with torchrun's exit code); every node appends its output to its log there. ``harness
report`` then rebuilds the result from those logs, as for any run.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

import yaml

from harness.planning.launch import NodeLaunch, Rendezvous
from harness.planning.plan import Plan
from harness.planning.recipe import LoadedRecipe
from harness.store import layout
from harness.store.layout import CONFIGS_DIR, LOG_FILE, NODES_DIR, RECIPE_FILE
from harness.store.records import JobRecord, PlanRecord, RecipeSourceRecord, RunStatus, dump_record

# The run store's layout, as the Docker and Slurm executors write it: every node's output in its
# node log, node 0's also in the run's log.
LOG_NODE0 = LOG_FILE
NODE_LOG = f"{NODES_DIR}/{layout.NODE_LOG.format(node='$NODE')}"
WAIT_FOR_RUN_FILES_S = 600


@dataclass(frozen=True)
class RunFiles:
    run_id: str
    files: dict[str, str]  # path inside the run folder -> text

    def configmap_items(self) -> tuple[dict[str, str], dict[str, str]]:
        """ConfigMap keys cannot hold '/': key -> text, and key -> path in the run folder."""
        data, paths = {}, {}
        for index, (path, text) in enumerate(sorted(self.files.items())):
            key = f"f{index}-{PurePosixPath(path).name}"
            data[key] = text
            paths[key] = path
        return data, paths


def new_run_id(recipe_name: str) -> str:
    # The run store's id format (harness.store.runs.RUN_ID_PATTERN): the PVC's runs/ reads like any store.
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{recipe_name}-{secrets.token_hex(3)}"


def run_files(loaded: LoadedRecipe, data: dict, plan_description: dict, plan: Plan, run_id: str) -> RunFiles:
    """The run folder's starting files, as the run store's records write them (versioned), so the
    results PVC reads like any run store."""
    files = {
        RECIPE_FILE: yaml.safe_dump(data, sort_keys=False),
        RecipeSourceRecord.FILE: dump_record(RecipeSourceRecord(path=str(loaded.path))),
        PlanRecord.FILE: dump_record(PlanRecord.model_validate(json.loads(json.dumps(plan_description, default=str)))),
        JobRecord.FILE: dump_record(JobRecord.from_job(plan.job)),
    }
    # The config and the local bases it inherits, exactly as a local run copies them.
    for source, relative in loaded.config_files():
        files[f"{CONFIGS_DIR}/{relative.as_posix()}"] = source.read_text()
    return RunFiles(run_id, files)


def _status_writer(run: str, executor: str, recipe: str) -> str:
    """``status <state> <exit code>``: status.json as the run store writes it, rendered from the
    RunStatus model with the pod's values in place of placeholders (a heredoc: no value is
    re-parsed by the shell beyond the four it fills in)."""
    fields = RunStatus(state="created", executor=executor, recipe=recipe).model_dump(mode="json")
    shell = {"state": '"$1"', "exit_code": "$2", "created": '"$CREATED"', "updated": '"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'}
    text = json.dumps({**fields, **{key: f"@{key}@" for key in shell}}, indent=2)
    text = text.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")  # literal in the heredoc
    for key, value in shell.items():
        text = text.replace(f'"@{key}@"', value)
    temporary, target = f"{run}/.{RunStatus.FILE}.tmp", f"{run}/{RunStatus.FILE}"
    return f"status() {{\n  cat > \"{temporary}\" <<STATUS\n{text}\nSTATUS\n  mv \"{temporary}\" \"{target}\"\n}}"


def node_script(launch: NodeLaunch, rendezvous: Rendezvous, files: RunFiles, *, run_dir: str, files_mount: str,
                executor: str, recipe: str) -> str:
    """The pod's ``sh -c`` script: set up the run folder (node 0), wait for it, run torchrun, record."""
    node = rendezvous.node_rank or "0"
    copies = []
    # job.json last: the other nodes start once it exists, so everything it names must be there.
    for path in sorted(files.files, key=lambda path: (path == JobRecord.FILE, path)):
        target = PurePosixPath(run_dir) / path
        copies.append(f'  mkdir -p "{target.parent}" && cp -L "{PurePosixPath(files_mount) / path}" "{target}"')
    lines = [
        "set -eu",
        *rendezvous.setup,
        f'NODE="{node}"',
        f'RUN="{run_dir}"',
        'CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"',
        _status_writer("$RUN", executor, recipe),
        'if [ "$NODE" = 0 ]; then',
        '  mkdir -p "$RUN"',
        *copies,
        "  status running null",
        "fi",
        # The other nodes start before node 0 has copied the job; torchrun's rendezvous waits too.
        "waited=0",
        'until [ -f "$RUN/job.json" ]; do',
        f'  if [ "$waited" -ge {WAIT_FOR_RUN_FILES_S} ]; then echo "node $NODE: no $RUN/job.json after {WAIT_FOR_RUN_FILES_S}s" >&2; exit 1; fi',
        "  sleep 2; waited=$((waited + 2))",
        "done",
        f'mkdir -p "$RUN/{NODES_DIR}"',
        f'if [ "$NODE" = 0 ]; then set -- "$RUN/{NODE_LOG}" "$RUN/{LOG_NODE0}"; else set -- "$RUN/{NODE_LOG}"; fi',
        'cd "$RUN"',
        "set +e",
        # POSIX sh has no pipefail: torchrun's own exit code goes through a file.
        f'{{ {launch.command_line()}; echo $? > "$RUN/.exit.node$NODE"; }} 2>&1 | tee -a "$@"',
        'code="$(cat "$RUN/.exit.node$NODE" 2>/dev/null || echo 1)"',
        'if [ "$NODE" = 0 ]; then if [ "$code" = 0 ]; then status succeeded 0; else status failed "$code"; fi; fi',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"
