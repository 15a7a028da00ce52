"""The names of the worker's event stream (``events.mllog``): its file name and event keys.

The writer (``harness.worker.events_hook``, in the training process) and the reader
(``harness.results.logs.events``, on any host) both take them from here, so neither imports the other.
"""

FILE_NAME = "events.mllog"
PREFIX = ":::MLLOG "

RUN_START = "run_start"
RUN_STOP = "run_stop"
WORLD_SIZE = "world_size"
GLOBAL_BATCH_SIZE = "global_batch_size"
OPT_BASE_LR = "opt_base_learning_rate"
TRAIN_SAMPLES = "train_samples"
SEED = "seed"
MAX_ITERS = "max_iters"
START_ITERATION = "start_iteration"
TRAIN_WINDOW = "train_window"
EVAL_ACCURACY = "eval_accuracy"
STATUS_SUCCESS = "success"
STATUS_ABORTED = "aborted"
