"""Versioned parsers for mmsegmentation training logs and the seed scripts' result files.

Pure Python and the standard library: it runs on a host without the training stack.
"""
from __future__ import annotations

from .errors import LogParseError
from .model import Evaluation, LogResult, TrainPoint
from .numbers import recompute_numbers, result_numbers
from .registry import FORMATS, parse_logs

__all__ = ["FORMATS", "Evaluation", "LogParseError", "LogResult", "TrainPoint", "parse_logs",
           "recompute_numbers", "result_numbers"]
