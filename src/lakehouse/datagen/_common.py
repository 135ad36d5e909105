"""Shared machinery for the source generators: seeded streams, fixed time anchors, value
formatting, defect placement and file sinks that record row counts and checksums."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

# The data window is fixed, never taken from the clock, so the same seed gives the same bytes on
# any day. Everything is UTC; times are held as int64 milliseconds since the epoch.
WINDOW_START = date(2026, 1, 1)
WINDOW_END = date(2026, 6, 30)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def day_number(d: date) -> int:
    """Days since 1970-01-01."""
    return (d - date(1970, 1, 1)).days


def ms_at(d: date) -> int:
    """Milliseconds since the epoch at midnight UTC starting day ``d``."""
    return day_number(d) * DAY_MS


WINDOW_START_MS = ms_at(WINDOW_START)
WINDOW_END_MS = ms_at(WINDOW_END) + DAY_MS  # exclusive: the first instant after the window
WINDOW_END_DAY = day_number(WINDOW_END)


def stream(seed: int, *key: str | int) -> np.random.Generator:
    """An independent random stream for one part of the data.

    Each source (and each chunk within it) draws from its own child of ``SeedSequence(seed)``,
    keyed by stable names rather than by call order, so adding a source or changing one source's
    draws never shifts another source's data.
    """
    spawn_key = tuple(k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))


def iso_ms(values: np.ndarray) -> list[str]:
    """ISO-8601 UTC timestamps with millisecond precision: ``2026-06-30T23:59:59.999Z``."""
    text = np.datetime_as_string(np.asarray(values, dtype="int64").astype("datetime64[ms]"))
    return [t + "Z" for t in text.tolist()]


def iso_day(values: np.ndarray) -> list[str]:
    """ISO-8601 dates from day numbers: ``2026-06-30``."""
    return np.datetime_as_string(np.asarray(values, dtype="int64").astype("datetime64[D]")).tolist()


def money(cents: int) -> str:
    """A decimal string with two places, from integer cents (exact, no float rounding)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{part:02d}"


def round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(values, dtype="float64") + 0.5).astype("int64")


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_line(record: dict) -> str:
    """One compact JSON object, keys in declaration order, UTF-8 text kept as is."""
    return _JSON.encode(record)


def truncate_json(line: str, keep: int, rng: np.random.Generator) -> str:
    """Cut a JSON object line short, as a partial write would: the business key (the first
    ``keep`` characters) survives, the closing brace never does, so the line cannot parse."""
    return line[: int(rng.integers(keep, len(line)))]


def non_numeric(text: str, variant: int) -> str:
    """A money string made unreadable as a number, the ways exports really break it."""
    if variant == 0:
        return text.replace(".", ",")  # a European decimal separator
    if variant == 1:
        return "N/A"
    return text[:-1] + "O"  # a letter O typed for a zero


def defect_count(n: int, rate: float, minimum: int = 1) -> int:
    """Rows to corrupt among ``n``: a fixed rate, but at least ``minimum`` so every defect class
    shows up even in the smallest chunk."""
    if n <= 0:
        return 0
    return min(n, max(minimum, int(round(n * rate))))


class RowPicker:
    """Chooses disjoint sets of rows for defects, so each row carries at most one defect class
    and the manifest's counts add up: rows = clean rows + the sum of row-level defects."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.free = np.ones(n, dtype=bool)
        self.rng = rng

    def pick(self, count: int, eligible: np.ndarray | None = None) -> np.ndarray:
        mask = self.free if eligible is None else self.free & eligible
        candidates = np.flatnonzero(mask)
        count = min(count, candidates.size)
        if count == 0:
            return np.empty(0, dtype="int64")
        chosen = np.sort(self.rng.choice(candidates, size=count, replace=False))
        self.free[chosen] = False
        return chosen

    def pick_runs(
        self,
        count: int,
        width: int,
        eligible: np.ndarray | None = None,
        accept: Callable[[int, int], bool] | None = None,
    ) -> list[tuple[int, int]]:
        """Pick rows ``i`` that can be moved ``k`` (1..width) places later past free rows only.

        Returns ``(i, k)`` pairs and reserves rows ``i..i+k``; the rows passed over stay clean,
        which is what makes the moved row detectably out of order.
        """
        n = self.free.size
        ok = self.free if eligible is None else self.free & eligible
        picked: list[tuple[int, int]] = []
        for i in self.rng.permutation(max(n - width, 0)).tolist():
            if len(picked) >= count:
                break
            k = int(self.rng.integers(1, width + 1))
            if ok[i] and self.free[i : i + k + 1].all() and (accept is None or accept(i, k)):
                self.free[i : i + k + 1] = False
                picked.append((i, k))
        return sorted(picked)


def arrange(
    n: int,
    moves: list[tuple[int, int]] = (),
    copies: list[tuple[int, float]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """File order for ``n`` rows after moving some later and inserting copies.

    ``moves``: ``(i, k)`` puts row ``i`` just after row ``i + k``. ``copies``: ``(src, pos)``
    inserts another copy of row ``src`` just after original position ``pos`` (may be -1).
    Returns ``(row_index, is_copy)`` arrays in file order.
    """
    keys = np.arange(n, dtype="float64")
    for i, k in moves:
        keys[i] = i + k + 0.5
    src = np.array([c[0] for c in copies], dtype="int64")
    copy_keys = np.array([c[1] + 0.75 for c in copies], dtype="float64")
    all_keys = np.concatenate([keys, copy_keys])
    rows = np.concatenate([np.arange(n, dtype="int64"), src])
    is_copy = np.concatenate([np.zeros(n, dtype=bool), np.ones(src.size, dtype=bool)])
    order = np.argsort(all_keys, kind="stable")
    return rows[order], is_copy[order]


# Arrow arrays built from their buffers: ``pa.array`` would import pandas, a second of start-up
# that the CLI and every test process would pay for nothing.


def arrow_strings(values: list[str | None]) -> pa.Array:
    """A string array; ``None`` is null."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(values) + 1, dtype="int32")
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    valid = np.packbits(np.array([v is not None for v in values], dtype=bool), bitorder="little")
    buffers = [pa.py_buffer(valid), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def arrow_ints(values: np.ndarray) -> pa.Array:
    """An int32 array (Spark ``int``), no nulls."""
    data = np.ascontiguousarray(values, dtype="<i4")
    return pa.Array.from_buffers(pa.int32(), data.size, [None, pa.py_buffer(data)])


def arrow_bools(values: np.ndarray) -> pa.Array:
    """A boolean array, no nulls."""
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def arrow_timestamps(ms: np.ndarray) -> pa.Array:
    """UTC timestamps in microseconds (Spark ``timestamp``) from int64 milliseconds."""
    data = np.ascontiguousarray(np.asarray(ms, dtype="int64") * 1000, dtype="<i8")
    utc = pa.timestamp("us", tz="UTC")
    return pa.Array.from_buffers(utc, data.size, [None, pa.py_buffer(data)])


@dataclass
class FileResult:
    path: str  # relative to the output folder, with forward slashes
    rows: int
    bytes: int
    sha256: str
    defects: dict[str, int] = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DefectLog:
    """Records which rows (by business key) in which file carry which defect."""

    def __init__(self) -> None:
        self.entries: dict[str, list[str]] = {}
        self.per_file: dict[str, Counter] = {}

    def add(self, defect: str, key: str, file: str | None = None) -> None:
        self.entries.setdefault(defect, []).append(key)
        if file is not None:
            self.per_file.setdefault(file, Counter())[defect] += 1

    def declare(self, *defects: str) -> None:
        """Make a class appear in the manifest even when a dataset ends up with none of it."""
        for defect in defects:
            self.entries.setdefault(defect, [])


class TextSink:
    """Writes one text file (JSON lines or CSV) and reports its rows, size and checksum."""

    def __init__(self, root: Path, rel_path: str, header: list[str] | None = None):
        self.rel_path = rel_path
        self.path = root / rel_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w", encoding="utf-8", newline="")
        self.rows = 0
        if header is not None:
            self.handle.write(",".join(header) + "\n")

    def write(self, lines: list[str]) -> None:
        if lines:
            self.handle.write("\n".join(lines))
            self.handle.write("\n")
            self.rows += len(lines)

    def write_csv(self, rows: list[list[str]]) -> None:
        """Write CSV rows (quoting only where needed, ``\n`` line ends)."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        self.handle.write(buffer.getvalue())
        self.rows += len(rows)

    def close(self, log: DefectLog) -> FileResult:
        self.handle.close()
        return finish_file(self.path, self.rel_path, self.rows, log)


def finish_file(path: Path, rel_path: str, rows: int, log: DefectLog) -> FileResult:
    return FileResult(
        path=rel_path,
        rows=rows,
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
        defects=dict(sorted(log.per_file.get(rel_path, Counter()).items())),
    )
