"""``python -m mpidml``: version and the list of tools (each also a console script)."""
import sys

from . import __version__

# (module, console script, one line): the single list behind `python -m mpidml --help`;
# setup.cfg's console_scripts name the same modules' main()
TOOLS = (
    ("train", "mpidml-train", "train a model, data-parallel or model-parallel (run under mpiexec)"),
    ("data", "mpidml-data", "data sets: synth, convert (CSV/TSV/libsvm/.npy/.npz -> HDF5), inspect, check"),
    ("evaluate", "mpidml-evaluate", "objective and accuracy/RMSE of a saved model on a labelled data set"),
    ("predict", "mpidml-predict", "predictions and class probabilities of a saved model (.h5/.csv/.tsv/.npy)"),
    ("bench", "mpidml-bench", "collective microbenchmarks (OSU / nccl-tests style; under mpiexec)"),
    ("plot", "mpidml-plot", "plot training curves from --metrics logs (needs matplotlib)"),
    ("sweep", "mpidml-sweep", "gather a Slurm array sweep's metrics into one table"),
    ("doctor", "mpidml-doctor", "preflight for an MPI job: launcher, ranks per node, threads, data"),
)

USAGE = f"""mpidml {__version__}: MPI distributed training toolkit

usage: python -m mpidml.TOOL [--help] [--version] ...   (or the console script mpidml-TOOL)

tools:
""" + "".join(f"  {m:<9} {line}\n" for m, _, line in TOOLS) + """
  python -m mpidml --version   print the version
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("--version", "-V"):
        print(f"mpidml {__version__}")
        return 0
    if argv and argv[0] not in ("-h", "--help"):
        sys.stderr.write(USAGE + f"\nmpidml: error: unknown argument {argv[0]!r}; run python -m mpidml.TOOL\n")
        return 2
    print(USAGE, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
