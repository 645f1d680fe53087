"""Every tool answers --version fast (no MPI start-up), ``python -m mpidml --help`` lists them
all, and setup.cfg has a console script for each (issue 19)."""

import configparser
import importlib
import os
import subprocess
import sys

from mpidml import __version__
from mpidml.__main__ import TOOLS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["train", "bench", "data", "evaluate", "predict", "plot", "sweep", "doctor"]


def test_every_tool_has_version_and_is_listed():
    assert sorted(m for m, _, _ in TOOLS) == sorted(NAMES)
    procs = {t: subprocess.Popen([sys.executable, "-m", f"mpidml.{t}", "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for t in NAMES}
    for t, p in procs.items():
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out.strip() == f"mpidml {__version__}", (t, out)
    res = subprocess.run([sys.executable, "-m", "mpidml", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for t in NAMES:
        assert f"  {t} " in res.stdout, (t, res.stdout)
    bad = subprocess.run([sys.executable, "-m", "mpidml", "trian"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown argument 'trian'" in bad.stderr


def test_console_scripts_name_each_tool_main():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = [x.strip() for x in cfg["options.entry_points"]["console_scripts"].splitlines() if x.strip()]
    scripts = dict(tuple(p.strip() for p in x.split("=")) for x in lines)
    assert sorted(scripts) == sorted(script for _, script, _ in TOOLS)
    for _, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
