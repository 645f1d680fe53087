"""RisingObjectiveHook (engine/hooks.py): one rank-0 warning naming the epoch and objectives."""

from types import SimpleNamespace

from mpidml.engine.hooks import RisingObjectiveHook


class FakeLog:
    def __init__(self):
        self.lines, self.records = [], []

    def always(self, msg):
        self.lines.append(msg)

    def record(self, obj):
        self.records.append(obj)


def run(objectives, initial=0.693147):
    log = FakeLog()
    hook = RisingObjectiveHook(log)
    hook.on_start(SimpleNamespace(initial=SimpleNamespace(objective=initial), cfg=SimpleNamespace(lr=0.5)))
    for epoch, obj in enumerate(objectives, 1):
        hook.on_epoch({"epoch": epoch, "step": 10 * epoch, "objective": obj})
    return log


def test_warns_once_at_the_first_rise():
    log = run([0.62, 0.98, 1.2, 0.9])           # issue 24's shape: 0.62 -> 0.98 at epoch 2
    assert len(log.lines) == 1 and "epoch 2" in log.lines[0] and "0.620000 -> 0.980000" in log.lines[0]
    assert log.records == [{"type": "warning", "epoch": 2, "step": 20, "what": "objective_rose",
                            "previous": 0.62, "objective": 0.98}]


def test_first_epoch_compared_with_the_initial_objective():
    assert "epoch 1" in run([0.8]).lines[0]


def test_no_warning_when_decreasing_or_within_tolerance():
    assert not run([0.6, 0.5, 0.5003, 0.47]).lines       # +0.06 %: below the 0.1 % tolerance
    assert not run([0.6, None, 0.5]).lines               # epochs without evaluation are skipped
    assert run([0.6, 0.5, 0.5006]).lines                 # +0.12 %
