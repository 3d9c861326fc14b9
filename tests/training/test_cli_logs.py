"""Progress output when stderr is not a terminal: no progress bars (no carriage returns), one line per epoch.

Run in a fresh process with its output piped, as in a batch job or CI log, through the Python API
(``train(load_config(...))``), which shows its progress like ``molequi train`` does.
"""

from __future__ import annotations

import re
import subprocess
import sys

import yaml


def test_python_api_logs_one_line_per_epoch_without_bars(tiny_config, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(progress_bar=True, plots=False)))
    script = f"from molequi.training import load_config, train\ntrain(load_config({str(config)!r}))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout + done.stderr
    epochs = [line for line in done.stderr.splitlines() if re.match(r"epoch +\d+/2 ", line)]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], done.stderr
