"""``python -m mpidml``: version and entry points."""
import sys

from . import __version__

USAGE = f"""mpidml {__version__}: MPI distributed training toolkit

  mpirun -n N python -m mpidml.train [--help]   train (data-parallel, own ring allreduce)
  python -m mpidml --version                     print the version
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("--version", "-V"):
        print(f"mpidml {__version__}")
        return 0
    print(USAGE, end="")
    return 0 if not argv or argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
