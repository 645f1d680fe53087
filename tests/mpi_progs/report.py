"""The case record every MPI case program keeps: one verdict per case, agreed on by all
ranks (a case is ok only if it is ok on every rank; the ranks where it failed are named).
Rank 0 prints ``{"p": P, "results": [...]}`` last (tests/mpirun.py ``run_case_report``)."""


class Report:
    def __init__(self, comm):
        self.comm = comm
        self.results: list[dict] = []

    def record(self, name, ok, detail="") -> None:
        oks = self.comm.allgather(bool(ok))
        self.results.append({"case": name, "ok": all(oks), "detail": str(detail),
                             "bad_ranks": [r for r, o in enumerate(oks) if not o]})
