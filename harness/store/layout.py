"""Every name in a run folder (``results/runs/<run-id>/``), defined once: the run store, the
executors, the Kubernetes pod script, ingest and bundles all take them from here. The JSON
records' names are their models' ``FILE`` (``harness.store.records``)."""

RECIPE_FILE = "recipe.yaml"  # the recipe as run (every --set applied)
LOG_FILE = "train.log"  # the full output of (node 0 of) the run
NODES_DIR = "nodes"  # multi-node runs: every node's own log
NODE_LOG = "node-{node}.log"  # in NODES_DIR
WORK_DIR = "work_dir"  # mmengine's work_dir: one timestamp folder per (re)start
CONFIGS_DIR = "configs"  # the recipe's config and the local bases it inherits
PLOTS_DIR = "plots"  # drawn by the commands that record the run
RESOLVED_CONFIG = "resolved_config.py"  # the mmengine config the worker really ran
SBATCH_FILE = "job.sbatch"  # the batch script of a Slurm run
LOCK_FILE = ".lock"  # held (exclusive) by the harness attempt running the run
TRAINER_LOCK_FILE = ".trainer.lock"  # held (shared) by every live worker process of the run
