"""A broken model file never takes the server down: at start it is a one-line error naming the file, and a model
whose edit points at one keeps its old version serving (tests/server/test_hot_reload.py has that half)."""

import subprocess
import sys

import pytest

from tests.broken_models import BROKEN
from tests.conftest import free_port

pytestmark = pytest.mark.slow

@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_model_at_start_is_a_one_line_error_naming_the_file(broken_models, name):
    path = broken_models[name]
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--model", str(path), "--port",
                             str(free_port())], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])  # not a crash (-11: SIGSEGV)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
