"""Issue 25 item 8: no output overwrites an input or an existing file of another kind
(exit 2 before any training); every output creates its parent directories; bad float
settings (``--dc-lambda nan``) are refused."""

import hashlib
import json
import os

import h5py
import numpy as np
import pytest

from mpidml.data.convert import convert
from mpidml.data.synth import binary_dense_blocks, write_blocks
from mpidml.runtime.errors import MpidmlError
from mpidml.saved import save_model

from mpirun import run_mpi


def file_kind(path):
    from mpidml.runtime.outputs import file_kind
    return file_kind(path)


def digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.fixture
def files(tmp_path):
    out = {}
    out["data"] = str(tmp_path / "train.h5")
    write_blocks(out["data"], binary_dense_blocks(600, 4, seed=1), 600, 4, np.float32, np.float32)
    out["model"] = str(tmp_path / "model.h5")
    save_model(out["model"], {"kind": "logreg", "d": 4, "dtype": "float32"}, np.zeros(5, np.float32), {}, {})
    out["predictions"] = str(tmp_path / "pred.h5")
    with h5py.File(out["predictions"], "w") as f:
        f["prediction"] = np.zeros(3)
        f["score"] = np.zeros(3)
    out["checkpoint"] = str(tmp_path / "ckpt-10.h5")
    with h5py.File(out["checkpoint"], "w") as f:
        f.attrs["step"] = 10
        f.attrs["attrs_sha256"] = "x"
    out["metrics"] = str(tmp_path / "m.jsonl")
    with open(out["metrics"], "w") as fh:
        fh.write(json.dumps({"type": "header"}) + "\n")
    out["trace"] = str(tmp_path / "t.json")
    with open(out["trace"], "w") as fh:
        json.dump({"traceEvents": []}, fh)
    out["json"] = str(tmp_path / "b.json")
    with open(out["json"], "w") as fh:
        json.dump({"collective": "allreduce"}, fh, indent=1)
    out["text"] = str(tmp_path / "cfg.toml")
    with open(out["text"], "w") as fh:
        fh.write("epochs = 2\n")
    out["empty"] = str(tmp_path / "empty.out")
    open(out["empty"], "w").close()
    return out


def test_file_kind_by_content_not_extension(files, tmp_path):
    for kind, path in files.items():
        assert file_kind(path) == kind, path
    disguised = str(tmp_path / "metrics.jsonl")       # an HDF5 data set named .jsonl
    os.link(files["data"], disguised)
    assert file_kind(disguised) == "data" and file_kind(str(tmp_path / "nothing")) is None
    assert file_kind(str(tmp_path)) == "directory"


def test_check_output_refuses_inputs_and_other_kinds(files, tmp_path):
    from mpidml.runtime.outputs import check_output, check_outputs

    expected = {"metrics": "metrics", "timeline": "trace", "json": "json", "model": "model",
                "predictions": "predictions", "data": "data"}
    for out_kind, same in expected.items():
        for kind, path in files.items():
            if kind in (same, "empty"):
                assert check_output(path, out_kind, "--x") == path
            else:
                with pytest.raises(MpidmlError, match="refusing to overwrite"):
                    check_output(path, out_kind, "--x")
    link = str(tmp_path / "again.h5")                 # the input through another name
    os.symlink(files["data"], link)
    with pytest.raises(MpidmlError, match=r"--save-model .*again.h5: is the input file of --data"):
        check_outputs([("--save-model", link, "data")], [("--data", files["data"])])
    with pytest.raises(MpidmlError, match="the same path as --metrics"):
        check_outputs([("--metrics", str(tmp_path / "a"), "metrics"), ("--timeline", str(tmp_path / "a"), "timeline")])
    nested = str(tmp_path / "x" / "y" / "z.jsonl")     # parents created, the same for every kind
    check_outputs([("--metrics", nested, "metrics")])
    assert os.path.isdir(os.path.dirname(nested)) and not os.path.exists(nested)


def test_data_tools_refuse_to_overwrite_their_input_or_other_files(files, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("1,2,0\n3,4,1\n")
    with pytest.raises(MpidmlError, match="is the input file of the conversion"):
        convert(str(src), str(src))
    with pytest.raises(MpidmlError, match="exists and is an mpidml saved model, not an HDF5 data set"):
        convert(str(src), files["model"])
    with pytest.raises(MpidmlError, match="exists and is a JSON-lines metrics log"):
        write_blocks(files["metrics"], binary_dense_blocks(10, 2), 10, 2, np.float32, np.float32)
    convert(str(src), files["data"], label_column="2")  # replacing a data set is re-running convert
    assert file_kind(files["data"]) == "data"
    unlabelled = str(tmp_path / "unlabelled.h5")       # no /y: still a data set, so re-converting replaces it
    for _ in range(2):
        convert(str(src), unlabelled, label_column="none", checksums=True)
    assert file_kind(unlabelled) == "data"
    res = run_mpi(1, ["-m", "mpidml.data", "synth", "binary", files["checkpoint"], "--rows", "10"], timeout=60)
    assert res.returncode == 2 and "exists and is an mpidml checkpoint" in res.stderr, res.output


def test_training_outputs_never_overwrite_inputs(files, tmp_path):
    """--metrics / --save-model / --timeline at the data file, and predict -o at the data or
    model file: exit 2 before any training, files unchanged; missing parents created."""
    data, model = files["data"], files["model"]
    before = {p: digest(p) for p in (data, model, files["checkpoint"])}
    train = ["-m", "mpidml.train", "--data", data, "--epochs", "1", "--batch-size", "64"]
    for flag, target, text in (("--metrics", data, "is the input file of --data"),
                               ("--save-model", data, "is the input file of --data"),
                               ("--timeline", data, "is the input file of --data"),
                               ("--metrics", files["checkpoint"], "exists and is an mpidml checkpoint, not a "
                                                                  "JSON-lines metrics log")):
        res = run_mpi(2, train + [flag, target], timeout=90)
        assert res.returncode == 2, res.output
        assert f"{flag} {target}: {text}" in res.stderr and res.stderr.count("mpidml: error") == 1
        assert "epoch" not in res.stdout, res.output          # refused before training
    for target in (data, model):
        res = run_mpi(2, ["-m", "mpidml.predict", model, data, "-o", target], timeout=90)
        assert res.returncode == 2 and f"-o {target}: is the input file of" in res.stderr, res.output
    assert {p: digest(p) for p in before} == before
    out = tmp_path / "new" / "dirs"
    res = run_mpi(2, train + ["--metrics", str(out / "m" / "run.jsonl"), "--save-model", str(out / "s" / "m.h5"),
                              "--timeline", str(out / "t" / "trace.json"), "-q"], timeout=120)
    assert res.returncode == 0, res.output
    assert file_kind(str(out / "m" / "run.jsonl")) == "metrics" and file_kind(str(out / "s" / "m.h5")) == "model"
    assert file_kind(str(out / "t" / "trace.json")) == "trace"
    pred = str(out / "p" / "pred.h5")
    res = run_mpi(2, ["-m", "mpidml.predict", str(out / "s" / "m.h5"), data, "-o", pred], timeout=90)
    assert res.returncode == 0 and file_kind(pred) == "predictions", res.output
    # predict's CSV / .npy tables are predictions too (by content): re-running predict replaces them,
    # while a CSV that is not predict's table is refused
    for ext in ("csv", "npy"):
        table = str(out / "p" / f"pred.{ext}")
        for _ in range(2):
            res = run_mpi(1, ["-m", "mpidml.predict", str(out / "s" / "m.h5"), data, "-o", table], timeout=90)
            assert res.returncode == 0 and file_kind(table) == "predictions", res.output
    other = str(out / "p" / "notes.csv")
    with open(other, "w") as fh:
        fh.write("name,value\nx,1\n")
    res = run_mpi(1, ["-m", "mpidml.predict", str(out / "s" / "m.h5"), data, "-o", other], timeout=90)
    assert res.returncode == 2 and f"-o {other}: exists and is a text file" in res.stderr, res.output


def test_dc_lambda_nan_and_other_non_finite_floats_are_refused(tmp_path):
    from mpidml.engine.config import config_from_args, load_toml, parse_args

    for argv in (["--algo", "ps", "--dc-lambda", "nan"], ["--algo", "ps", "--dc-lambda", "inf"],
                 ["--algo", "ps", "--dc-lambda", "-1"]):
        cfg = config_from_args(parse_args(argv))
        with pytest.raises(ValueError, match="--dc-lambda must be >= 0 and finite"):
            cfg.validate()
    toml = tmp_path / "c.toml"
    toml.write_text("algo = 'ps'\ndc-lambda = nan\n")
    cfg = config_from_args(parse_args(["--config", str(toml)]))
    assert np.isnan(load_toml(str(toml))["dc_lambda"])
    with pytest.raises(ValueError, match="--dc-lambda must be >= 0 and finite"):
        cfg.validate()
    res = run_mpi(1, ["-m", "mpidml.train", "--algo", "ps", "--dc-lambda", "nan"], timeout=60)
    assert res.returncode == 2 and "--dc-lambda must be >= 0 and finite, got nan" in res.stderr, res.output
