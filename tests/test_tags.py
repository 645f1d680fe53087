"""One tag table (comm/tags.py): distinct values, and no module writes a tag literal."""

import os
import re

import pytest

from mpidml.comm.collectives import CONTROL, ControlValues
from mpidml.comm.tags import Tag
from mpidml.runtime.poll import Backoff, poll_until

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mpidml")


def test_tags_are_distinct():
    values = [t.value for t in Tag]
    assert len(values) == len(set(values)) > 10
    assert Tag.EASGD_MEET != Tag.BCAST          # the collision of 0x6D30


def test_no_tag_literals_outside_the_table():
    pattern = re.compile(r"(_TAG\w*\s*(,\s*_TAG\w*\s*)*=\s*0x[0-9A-Fa-f]+|tag\s*=\s*0x[0-9A-Fa-f]+)")
    found = []
    for folder, _, files in os.walk(ROOT):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not path.endswith(os.path.join("comm", "tags.py")):
                with open(path) as fh:
                    found += [f"{path}:{i}" for i, line in enumerate(fh, 1) if pattern.search(line)]
    assert not found, found


def test_control_layout_is_named():
    import numpy as np

    buf = np.zeros(CONTROL.size + 2)
    CONTROL.pack(buf[2:], ControlValues(loss=1.5, count=3, stop=1, nan=0))
    assert CONTROL.unpack(buf[2:]) == ControlValues(1.5, 3.0, 1.0, 0.0)
    assert [CONTROL.offset(f) for f in ("loss", "count", "stop", "nan")] == [0, 1, 2, 3]


def test_poll_until_and_backoff():
    calls = []
    assert poll_until(lambda: calls.append(1) or len(calls) >= 5, Backoff(spin=2, nap=1e-4, max_nap=1e-3, growth=2))
    assert len(calls) == 5
    assert poll_until(lambda: False, Backoff(nap=1e-3), timeout=0.01) is False
    with pytest.raises(ValueError):
        Backoff(growth=0.5)


def test_comm_does_not_import_data():
    for name in os.listdir(os.path.join(ROOT, "comm")):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, "comm", name)) as fh:
                text = fh.read()
            assert "from ..data" not in text and "mpidml.data" not in text, name
            assert "import _check_buffer" not in text and "_scale_mean" not in text, name
