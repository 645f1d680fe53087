import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpirun import SCALE_VAR, timeout_scale  # noqa: E402  (needs the path above)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Scale pytest-timeout's per-test limit (--timeout, PYTEST_TIMEOUT or setup.cfg's ``timeout``)
    by MPIDML_TEST_TIMEOUT_SCALE, before pytest-timeout reads it (tryfirst). A test that needs
    its own limit writes ``@pytest.mark.timeout(scaled(S))`` (mpirun.scaled) to get the same factor."""
    scale = timeout_scale()
    if scale == 1 or not config.pluginmanager.hasplugin("timeout"):
        return
    base = config.getvalue("timeout")
    if base is None:
        base = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout")
    if base:
        config.option.timeout = float(base) * scale


def pytest_report_header(config):
    scale = timeout_scale()
    return f"{SCALE_VAR}={scale:g}" + ("" if scale == 1 else " (subprocess and per-test timeouts scaled)")
