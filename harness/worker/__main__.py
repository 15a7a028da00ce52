import sys

from harness.core.errors import HarnessError, report_error
from harness.worker.main import main

try:
    code = main()
except HarnessError as exc:  # one line and the error's exit code, as the harness CLI
    code = report_error("harness.worker", exc)
sys.exit(code)
