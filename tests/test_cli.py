"""The ``molequi`` dispatcher: ``--version``, a fast ``--help``, one-line help of each sub-command."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

from molequi import __version__
from molequi.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"molequi {__version__}"
    assert __version__ == importlib.metadata.version("molequi")  # the installed distribution's


def test_help_imports_no_subcommand_and_no_torch():
    probe = (
        "import sys\nfrom molequi.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('molequi.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *help_lines, modules = done.stdout.strip().splitlines()
    assert modules == "['molequi.cli']"
    assert all(name in "\n".join(help_lines) for name in COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_line_is_the_modules_first_docstring_line(name):
    module_name, summary = COMMANDS[name]
    assert importlib.import_module(module_name).__doc__.strip().splitlines()[0] == summary


def test_subcommand_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--help"])
    assert stop.value.code == 0
    assert "--energy-unit" in capsys.readouterr().out
