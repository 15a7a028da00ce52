"""``harness parse LOG...``: read training logs, print the numbers (or JSON) with their sources."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.arguments import positive_int
from harness.core.errors import BadInput, environment_problem, exits_with_code
from harness.results.logs import FORMATS, LogParseError, LogResult, parse_logs


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "parse", help="parse mmseg training logs or seed result files",
        description="Parse mmsegmentation 0.x/1.x training logs (text, .log.json, "
                    "vis_data/scalars.json, or a work_dir) and the seed scripts' result files; "
                    "print iterations, mean iteration time, FPS, final and best "
                    "aAcc/mIoU/mAcc, each with the file:line it came from. A harness run's "
                    "folder is read from its worker event stream (events.mllog) when every "
                    "(re)start wrote one; sources.numbers says which was used.")
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG",
                   help="log file(s) or folder(s) (an mmengine work_dir or timestamp folder); several files of a resumed run are "
                        "stitched in iteration order")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size", metavar="B",
                   help="images per device per iteration (default: from the log)")
    p.add_argument("--devices", type=positive_int, metavar="N",
                   help="number of devices (default: from the log, else 1)")
    p.add_argument("--format", choices=sorted(FORMATS), dest="fmt",
                   help="skip auto-detection")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)
    return p


@exits_with_code("harness parse")
def run(args: argparse.Namespace) -> int:
    try:
        result = parse_logs(args.logs, fmt=args.fmt, batch_per_device=args.batch_size,
                            devices=args.devices)
    except LogParseError as err:
        raise BadInput(str(err)) from None
    except OSError as err:
        raise environment_problem(err) or BadInput(str(err)) from None
    except (ValueError, UnicodeError, MemoryError, RecursionError) as err:
        # Anything else a hostile file can provoke still gets one line, not a traceback.
        raise BadInput(str(err)) from None
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(summary(result))
    return 0


def _fmt(value, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _scores(d: dict) -> str:
    return ", ".join(f"{k} {_fmt(v, digits=6)}" for k, v in d.items())


def summary(r: LogResult) -> str:
    src = r.sources
    lines = [
        f"format:      {r.format} ({len(r.files)} file(s))",
        f"iterations:  {_fmt(r.iterations)} / {_fmt(r.max_iters)}"
        + ("  [partial]" if r.partial else ""),
        f"batch:       {_fmt(r.batch_per_device)} per device x {_fmt(r.devices)} device(s)",
        f"iter time:   {_fmt(r.mean_iter_time_s, ' s')} (mean, first window excluded)",
        f"fps:         {_fmt(r.fps, ' img/s')} global; seed definition "
        f"{_fmt(r.fps_seed_definition, ' img/s')} (peak window)",
        f"final:       {_scores(r.final)}  [{src.get('final', '-')}]",
        f"best:        {_scores(r.best)}  [{src.get('best', '-')}]",
        f"evaluations: {r.evaluations_count}; final loss {_fmt(r.final_loss)}",
    ]
    lines += [f"warning:     {w}" for w in r.warnings]
    return "\n".join(lines) + "\n"
