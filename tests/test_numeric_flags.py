"""Property-based test over every numeric command-line flag (issue 18, point 7).

Values are NaN and infinities in every spelling, negative, zero, huge (beyond int64 and float32),
tiny, the documented bounds and just beyond them, non-numeric text and anything hypothesis
draws. Every invocation ends in exit 0, or in exit 2 with exactly one ``mskd: error:`` line and
nothing written; never a traceback, never exit 1 (training stopped by a non-finite number).

Two properties keep this fast (tens of examples of each, seconds in all):

- every flag of every command, checked up to the point where work would start (loading the data
  or a checkpoint, launching processes): a refused value is one line and exit 2 with nothing
  written; an accepted value is finite and inside the range the flag documents;
- the flags whose accepted values do not change how long a run takes (loss weights,
  temperatures, learning rate, seeds, layer choices, checkpoint interval), run for real on a
  tiny graph for two epochs: an accepted value trains to finite scores (exit 0).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_graph, tree_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mskd.api
import mskd.cli
from mskd.cli import build_parser, main
from mskd.distill import METHODS

# command -> numeric flags with (kind, lowest, highest) as documented by their --help: a float
# flag's accepted values are finite and inside [lowest, highest] (lowest excluded for --lr), an
# integer flag's are integers inside it.
I64 = 2**63 - 1
SEED = ("int", 0, 2**32 - 1)
COUNT = ("int", 1, I64)
TRAINING = {"--epochs": COUNT, "--patience": COUNT, "--lr": ("float", 0.0, 1.0),
            "--teacher-depths": ("ints", 1, 64), "--seed": SEED, "--split-seed": SEED}
DISTILL = {"--tau": ("float", 1e-3, 1e3), "--beta": ("float", 0.0, 1e6),
           "--gamma": ("float", 0.0, 1e6), "--temperature": ("float", 1e-3, 1e3),
           "--student-layer": ("ints", 0, I64), "--teacher-layers": ("int", 0, I64)}
SCALE = {"--fanout": ("ints", -1, I64), "--batch-size": COUNT, "--chunk-size": COUNT}
RESUME = {"--checkpoint-every": ("float", 0.0, math.inf)}
FLAGS: dict[str, dict[str, tuple[str, float, float]]] = {
    "run": {**TRAINING, **DISTILL, **SCALE, **RESUME, "--nproc": ("int", 1, 1024)},
    "teachers": {**TRAINING, **SCALE, **RESUME},
    "compare": {**TRAINING, **DISTILL, **SCALE, **RESUME},
    "degree": {**TRAINING, **DISTILL, **RESUME, "--buckets": ("int", 1, 1000)},
    "bench": {"--epochs": COUNT, "--teacher-epochs": COUNT, "--repeats": COUNT,
              "--warmup": ("int", 0, I64), "--teacher-depths": ("ints", 1, 64), "--seed": SEED,
              "--split-seed": SEED},
    "predict": {"--chunk-size": COUNT, "--split-seed": SEED},
    "evaluate": {"--split-seed": SEED},
}
# Flags run for real: their accepted values cost the same time as any other.
CHEAP = ("--lr", "--tau", "--beta", "--gamma", "--temperature", "--seed", "--split-seed",
         "--student-layer", "--teacher-layers", "--checkpoint-every")

SPECIAL = ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "1e39", "-1e39", "1e309",
           "1e-320", "1e-46", "0", "-0", "0.0", "-1", "-0.5", "1", "0.001", "0.000999", "1000",
           "1000.5", "1e6", "1000001", "4294967295", "4294967296", "9223372036854775807",
           "9223372036854775808", str(2**64), "-9223372036854775809", "1_000", "0x10", "1e3",
           "", " ", "abc", "1,2", "1,,2", "0,1", "-1,-1", "1,2,3", "1,65", "64", "65", "1e2,1",
           "2**64"]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


class _Accepted(BaseException):
    """Raised where a command would start its work: every argument was accepted."""


def _stop(*_args, **_kwargs):
    raise _Accepted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("numeric-flags") / "tiny.npz"
    np.savez(path, **make_graph())
    return path


def _argv(command: str, tiny: Path, out: Path, flag: str, value: str, inline: bool) -> list[str]:
    base = {"predict": ["--checkpoint", str(out / "c.pt"), "--out", str(out / "p.csv")],
            "evaluate": [str(out / "c.pt")],
            "bench": ["--dataset", str(tiny)],
            "compare": ["--dataset", str(tiny), "--out", str(out / "run"), "--seeds", "0"],
            "degree": ["--dataset", str(tiny), "--out", str(out / "run"), "--seeds", "0"]}.get(
        command, ["--dataset", str(tiny), "--out", str(out / "run")])
    pair = [f"{flag}={value}"] if inline else [flag, value]
    return [command, *base, "--device", "cpu", "--quiet", *pair]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("mskd: error: "), err
    return lines[0]


def _within(value: object, kind: str, low: float, high: float, flag: str) -> bool:
    values = value if kind == "ints" else (value,)
    if kind == "float":
        above = value > low if flag == "--lr" else value >= low
        return isinstance(value, float) and math.isfinite(value) and above and value <= high
    return all(isinstance(v, int) and low <= v <= high for v in values)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=VALUES, inline=st.booleans())
def test_every_numeric_flag_is_refused_on_one_line_or_in_range(tiny, capsys, monkeypatch, data,
                                                               value, inline) -> None:
    command = data.draw(st.sampled_from(sorted(FLAGS)), label="command")
    flag = data.draw(st.sampled_from(sorted(FLAGS[command])), label="flag")
    kind, low, high = FLAGS[command][flag]
    for name in ("load_dataset", "load_checkpoint", "_load_checkpoint_model"):
        monkeypatch.setattr(mskd.cli, name, _stop)
    monkeypatch.setattr(mskd.api, "load_dataset", _stop)  # run, distill, teachers, compare
    monkeypatch.setattr(mskd.cli.distributed, "launch", _stop)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        argv = _argv(command, tiny, out, flag, value, inline)
        capsys.readouterr()
        try:
            code = main(argv)
        except _Accepted:
            args = build_parser().parse_args(argv)
            parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
            assert _within(parsed, kind, low, high, flag), (argv, parsed)
        else:
            assert code == 2, argv
            _one_error_line(capsys)
        assert tree_snapshot(out) == {}, argv  # nothing written, whatever the outcome


def _real(low: float, high: float, *bounds: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(bounds), st.floats(low, high).map(repr))


# Values inside each cheap flag's range, its bounds above all.
IN_RANGE = {
    "--lr": _real(1e-300, 1.0, "1", "1e-300", "0.5"),
    "--tau": _real(1e-3, 1e3, "0.001", "1000"),
    "--temperature": _real(1e-3, 1e3, "0.001", "1000"),
    "--beta": _real(0.0, 1e6, "0", "1e6"),
    "--gamma": _real(0.0, 1e6, "0", "1e6"),
    "--seed": st.integers(0, 2**32 - 1).map(str),
    "--split-seed": st.integers(0, 2**32 - 1).map(str),
    "--student-layer": st.sampled_from(["0", "1", "0,1", "1,0", "2"]),
    "--teacher-layers": st.sampled_from(["0", "1", "2", "3"]),
    "--checkpoint-every": st.sampled_from(["0", "1e300", "0.5"]),
}


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), names=st.sets(st.sampled_from(CHEAP), min_size=1, max_size=3),
       method=st.sampled_from(list(METHODS)))
def test_accepted_values_train_to_finite_scores(tiny, capsys, data, names, method) -> None:
    # In range three times in four: most runs then train instead of stopping at the parser.
    flags = {f: data.draw(st.sampled_from([IN_RANGE[f]] * 3 + [VALUES]).flatmap(lambda s: s),
                          label=f) for f in sorted(names)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        pairs = [f"{f}={v}" for f, v in flags.items()]
        argv = ["run", "--dataset", str(tiny), "--teacher-depths", "1,2", "--epochs", "2",
                "--patience", "2", "--quiet", "--device", "cpu", "--out", str(out),
                "--method", method, *pairs]
        capsys.readouterr()
        code = main(argv)
        if code == 2:
            _one_error_line(capsys)
            assert not out.exists(), argv
        else:
            assert code == 0, (argv, capsys.readouterr().err)
            rec = json.loads((out / "results.json").read_text())
            scores = [m[k] for m in (*rec["teachers"], rec["student"]) for k in ("val", "test")]
            assert all(math.isfinite(s) for s in scores), (argv, scores)
