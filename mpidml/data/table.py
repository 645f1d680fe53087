"""Delimited text (CSV/TSV) to feature blocks: header, label column, string labels, NA
cells and categorical columns, in two streaming passes.

Pass 1 (``scan_csv``) reads the file once with the ``csv`` module (quoted fields as
pandas' ``to_csv`` writes them) and learns, per column, whether every non-missing cell
is a number, the distinct strings of the other columns, and where the first missing
cell is. From that a ``TablePlan`` fixes the output: the label column and its mapping
(string labels -> 0..K-1 in sorted order), the numeric feature columns, and the one-hot
columns of categorical features (their values in sorted order) -- so d is known before
any row is written. Pass 2 (``table_blocks``) converts blocks of rows.

Every problem is an ``MpidmlError`` naming the file, the 1-based line and the column
(its header name, or ``column N``, 1-based).
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass, field

import numpy as np

from ..runtime.errors import MpidmlError

__all__ = ["NA_VALUES", "LABEL_NAMES", "TablePlan", "scan_csv", "table_blocks", "unescape_delimiter"]

# cells read as missing (pandas' default na_values)
NA_VALUES = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                       "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])
# header names taken as the label column when --label-column is not given
LABEL_NAMES = ("label", "y", "target", "class")
MAX_CATEGORIES = 1000     # distinct values of one categorical column (one-hot width)


def unescape_delimiter(text: str) -> str:
    """``--delimiter '\\t'`` means a tab: backslash escapes are interpreted."""
    out = codecs.decode(text, "unicode_escape") if "\\" in text else text
    if len(out) != 1:
        raise MpidmlError(f"--delimiter {text!r}: one character expected (e.g. ',' ';' '\\t' '|')")
    return out


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


@dataclass
class _Column:
    name: str
    numeric: bool = True
    first_text: tuple[int, str] | None = None    # (line, cell) of the first non-number
    first_na: int | None = None                  # line of the first missing cell
    values: set = field(default_factory=set)     # distinct non-missing strings (capped)
    many: bool = False                           # more than MAX_CATEGORIES distinct values


@dataclass
class TablePlan:
    """What pass 2 writes: columns by 0-based index, label mapping, one-hot values."""

    path: str
    delimiter: str
    header: list[str] | None
    names: list[str]                      # every column's name for messages
    label: int | None                     # None: unlabelled
    label_names: list[str] | None         # string labels: class k is label_names[k]
    features: list[int]                   # input columns kept, in order
    categories: dict[int, list[str]]      # one-hot columns: their values (output order)
    na: str                               # "error" | "drop"
    na_rows: int = 0                      # rows with a missing cell in a used column
    rows: int = 0                         # data rows in the file

    @property
    def d(self) -> int:
        return sum(len(self.categories[c]) if c in self.categories else 1 for c in self.features)

    def feature_names(self) -> list[str]:
        out = []
        for c in self.features:
            out += [f"{self.names[c]}={v}" for v in self.categories[c]] if c in self.categories else [self.names[c]]
        return out


def _column_index(spec: str, header, ncol: int, path: str, what: str) -> int:
    if header is not None and spec in header:
        return header.index(spec)
    if spec.lstrip("-").isdigit() and -ncol <= int(spec) < ncol:
        return int(spec) % ncol
    raise MpidmlError(f"{path}: {what} {spec!r} is neither a header name nor a column index 0..{ncol - 1} "
                      f"(header: {header if header is not None else 'none'})")


def _rows(path: str, delimiter: str):
    """(1-based line, cells) of each non-blank record."""
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise MpidmlError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter)
        line = 1
        try:
            for cells in reader:
                if cells and any(c.strip() for c in cells):
                    yield line, [c.strip() for c in cells]
                line = reader.line_num + 1
        except csv.Error as exc:
            raise MpidmlError(f"{path}: line {reader.line_num}: {exc}") from None


def scan_csv(path: str, label_column=None, delimiter: str = ",", header: str = "auto", na: str = "error",
             categorical: str = "none", ignore: str | None = None) -> TablePlan:
    """Pass 1: read ``path`` and decide the output (see the module docstring).

    ``label_column``: header name, 0-based index, ``"none"`` (unlabelled) or None (a header
    column named label/y/target/class, else an error). ``header``: auto|yes|no (auto: the
    first line is a header if none of its cells is a number). ``na``: error|drop.
    ``categorical``: none (a non-numeric feature column is an error), auto (every
    non-numeric feature column is one-hot encoded), or a comma list of columns to one-hot
    encode. ``ignore``: comma list of columns to leave out."""
    if na not in ("error", "drop"):
        raise MpidmlError(f"--na {na!r}: error or drop expected")
    rows = _rows(path, delimiter)
    first = next(rows, None)
    if first is None:
        raise MpidmlError(f"{path}: empty file")
    line0, cells0 = first
    ncol = len(cells0)
    if header == "auto":
        has_header = not any(_number(c) for c in cells0)
    elif header in ("yes", "no"):
        has_header = header == "yes"
    else:
        raise MpidmlError(f"--header {header!r}: auto, yes or no expected")
    head = cells0 if has_header else None
    names = [(h or f"column {i + 1}") if head else f"column {i + 1}" for i, h in enumerate(head or [""] * ncol)]
    label = _label_index(path, label_column, head, ncol)
    skip = {_column_index(s.strip(), head, ncol, path, "--ignore-columns")
            for s in (ignore or "").split(",") if s.strip()}
    if label in skip:
        raise MpidmlError(f"{path}: the label column {names[label]} is also in --ignore-columns")
    cols = [_Column(n) for n in names]
    used = [i for i in range(ncol) if i not in skip]
    n = 0
    for line, cells in _chain(first, rows, has_header):
        if len(cells) != ncol:
            raise MpidmlError(f"{path}: line {line}: {len(cells)} cells, {ncol} expected "
                              f"(as on line {line0}{', the header' if has_header else ''})")
        n += 1
        for i in used:
            c, col = cells[i], cols[i]
            if c in NA_VALUES:
                if col.first_na is None:
                    col.first_na = line
                    if na == "error":
                        raise MpidmlError(
                            f"{path}: line {line}, column {names[i]}: missing value ({c!r}); pass "
                            "--na drop to leave out rows with missing cells" +
                            (" or --ignore-columns to leave out the column" if i != label else ""))
                continue
            if col.numeric and not _number(c):
                col.numeric, col.first_text = False, (line, c)
            if not col.many:
                col.values.add(c)
                if len(col.values) > MAX_CATEGORIES:
                    col.many, col.values = True, set()
    if n == 0:
        raise MpidmlError(f"{path}: no data rows")
    features = [i for i in used if i != label]
    one_hot = _one_hot_columns(path, categorical, features, cols, head, ncol)
    for i in features:
        col = cols[i]
        if i in one_hot and col.many:
            raise MpidmlError(f"{path}: column {col.name} has more than {MAX_CATEGORIES} distinct values; "
                              "too many to one-hot encode (leave it out with --ignore-columns)")
        if not col.numeric and i not in one_hot:
            ln, cell = col.first_text
            raise MpidmlError(f"{path}: line {ln}, column {col.name}: {cell!r} is not a number; pass "
                              "--categorical auto to one-hot encode text columns, or --ignore-columns "
                              f"{col.name}")
    label_names = None
    if label is not None and not cols[label].numeric:
        if cols[label].many:
            raise MpidmlError(f"{path}: label column {names[label]} has text values and more than "
                              f"{MAX_CATEGORIES} distinct ones; class labels expected")
        label_names = sorted(cols[label].values)
    na_rows = _count_na_rows(path, delimiter, has_header, used) if na == "drop" and any(
        cols[i].first_na is not None for i in used) else 0
    return TablePlan(path, delimiter, head, names, label, label_names, features,
                     {i: _sorted_values(cols[i].values) for i in sorted(one_hot)}, na, na_rows, n)


def _label_index(path: str, label_column, head, ncol: int) -> int | None:
    """The label column's index (None: unlabelled) from ``--label-column`` or the header."""
    if label_column is None:
        found = [i for i, h in enumerate(head or []) if h.lower() in LABEL_NAMES]
        if not found:
            raise MpidmlError(
                f"{path}: which column holds the labels? " + (
                    f"The header ({', '.join(head)}) has no column named {'/'.join(LABEL_NAMES)}" if head
                    else "The file has no header") +
                "; pass --label-column NAME or INDEX (0-based), or --label-column none for an "
                "unlabelled file (predictions only)")
        return found[0]
    if str(label_column).lower() == "none":
        return None
    return _column_index(str(label_column), head, ncol, path, "--label-column")


def _one_hot_columns(path: str, categorical: str, features, cols, head, ncol: int) -> set:
    """The feature columns to one-hot encode under ``--categorical``."""
    if categorical == "auto":
        return {i for i in features if not cols[i].numeric}
    if categorical == "none":
        return set()
    return {_column_index(s.strip(), head, ncol, path, "--categorical") for s in categorical.split(",") if s.strip()}


def _chain(first, rows, has_header):
    if not has_header:
        yield first
    yield from rows


def _sorted_values(values: set) -> list[str]:
    """Numbers in numeric order, then text in text order."""
    nums = sorted((v for v in values if _number(v)), key=float)
    return nums + sorted(v for v in values if not _number(v))


def _count_na_rows(path, delimiter, has_header, used) -> int:
    rows = _rows(path, delimiter)
    if has_header:
        next(rows)
    return sum(1 for _, cells in rows if any(cells[i] in NA_VALUES for i in used))


def table_blocks(plan: TablePlan, block_rows: int, dtype=np.float32):
    """Pass 2: yield (X dense block, labels float64 or None) in file order, rows with a
    missing cell left out (``na="drop"``; ``scan_csv`` already refused them otherwise)."""
    label_index = {v: k for k, v in enumerate(plan.label_names)} if plan.label_names else None
    onehot = {c: {v: k for k, v in enumerate(vals)} for c, vals in plan.categories.items()}
    used = plan.features + ([plan.label] if plan.label is not None else [])
    rows = _rows(plan.path, plan.delimiter)
    if plan.header is not None:
        next(rows)
    block: list = []

    def emit(block):
        k = len(block)
        X = np.zeros((k, plan.d), dtype=dtype)
        o = 0
        for c in plan.features:
            cells = [r[1][c] for r in block]
            if c in onehot:
                idx = onehot[c]
                X[np.arange(k), o + np.fromiter((idx[v] for v in cells), np.int64, k)] = 1
                o += len(idx)
            else:
                X[:, o] = _floats(cells, block, c, plan)
                o += 1
        y = None
        if plan.label is not None:
            cells = [r[1][plan.label] for r in block]
            y = (np.fromiter((label_index[v] for v in cells), np.float64, k) if label_index is not None
                 else _floats(cells, block, plan.label, plan))
        return X, y

    for line, cells in rows:
        if plan.na == "drop" and any(cells[i] in NA_VALUES for i in used):
            continue
        block.append((line, cells))
        if len(block) == block_rows:
            yield emit(block)
            block = []
    if block:
        yield emit(block)


def _floats(cells: list[str], block, c: int, plan: TablePlan) -> np.ndarray:
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        for (line, _), v in zip(block, cells):   # name the first bad cell
            if not _number(v):
                raise MpidmlError(f"{plan.path}: line {line}, column {plan.names[c]}: {v!r} is not a "
                                  "number") from None
        raise
