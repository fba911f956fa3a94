"""Multi-seed comparison of teachers and student methods, and the accuracy-by-degree analysis.

Layout of a comparison directory ``OUT``::

    OUT/compare-config.json           settings every cell was run with (checked on resume)
    OUT/seed<k>/teachers/teacher-L.pt the seed's teachers (reused by every method of the seed)
    OUT/seed<k>/teachers.json         the teachers' cell: scores, times (written last)
    OUT/seed<k>/<method>/results.json one student cell (written last, atomically)
    OUT/seed<k>/degree-seed.json      the seed's share of ``mskd degree`` (checkpoint digests)
    OUT/compare.{json,csv,md}         the aggregate over seeds

A cell whose JSON file exists is finished: it is loaded, never recomputed. That is how an
interrupted comparison resumes: only missing cells run. Cells are written atomically, so a crash
leaves a cell either finished or absent.

The JSON files alone (no checkpoint) are enough to rebuild ``compare.*`` and ``degree.*``: a
comparison can be carried to another machine, or extended there seed by seed, without its
checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Data

from .attention import teacher_weights
from .config import SEED_MAX, ConfigError, RunConfig, teacher_names
from .context import RunContext
from .data import GraphDataset
from .distill import METHODS, check_data, scheduled, train_student
from .distill import validate as validate_distill
from .evaluate import (
    bucket_scores,
    metric_name,
    model_logits,
    quantile_buckets,
    score,
    split_in_degrees,
    split_logits,
)
from .report import (
    aggregate_rows,
    compare_csv,
    compare_markdown,
    markdown_table,
    mean_std,
    model_row,
    results_record,
)
from .runs import (
    RunDirError,
    RunLock,
    file_digest,
    first_difference,
    load_checkpoint,
    write_json,
    write_text,
)
from .selection import FITTED, calibrated_uniform, ensemble, oracle, selection_weights
from .teachers import check_compatible, model_from_checkpoint, train_or_load_teachers

CONFIG_FILE = "compare-config.json"
# Each seed is a full set of trained models: a comparison of more is a typo, not a plan.
MAX_SEEDS = 1000


class SettingsMismatch(RunDirError):
    """A comparison directory made with other settings than the ones asked for."""


# --- arguments -----------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"`` -> [0, 2, 5]; ranges and lists combine
    (``"0-2,7"``). Duplicates are dropped, order is kept."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            # Also catches negative seeds ("-1" splits into "" and "1").
            raise ConfigError(
                f"--seeds: cannot read {part!r}; use a range like 0-4 or a list like 0,2,5 "
                "(seeds >= 0)"
            ) from None
        if b < a:
            raise ConfigError(f"--seeds: empty range {part!r} (end before start)")
        if b > SEED_MAX:
            raise ConfigError(f"--seeds: {b} is beyond the largest seed, {SEED_MAX}")
        if b - a + 1 + len(seeds) > MAX_SEEDS:
            # Checked before the range is expanded: 0-4294967295 would not fit in memory.
            raise ConfigError(f"--seeds: more than {MAX_SEEDS} seeds in {text!r}")
        seeds += range(a, b + 1)
    if not seeds:
        raise ConfigError("--seeds: no seed given")
    return list(dict.fromkeys(seeds))


def parse_methods(text: str) -> list[str]:
    """Comma-separated student methods, each a key of :data:`mskd.distill.METHODS`."""
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not methods:
        raise ConfigError("--methods: no method given")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown method {bad[0]!r}; valid: {', '.join(METHODS)}")
    return methods


def default_methods(base: RunConfig) -> list[str]:
    """Every method of :data:`~mskd.distill.METHODS` in order, less any that would train exactly
    as an earlier one with these settings (``calibrated`` while ``--attention`` is calibrated,
    mskd's default), so a comparison's default list trains no cell twice."""
    seen: set[tuple] = set()
    out = []
    for name, m in METHODS.items():
        key = (m.teachers, tuple(t.name for t in m.terms), m.attention_for(base.distill))
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def cell_config(base: RunConfig, seed: int, method: str) -> RunConfig:
    """The config of one cell: the shared settings with this seed and method (and the student's
    epochs as the method's schedule runs them)."""
    return scheduled(dataclasses.replace(base, seed=seed,
                                         distill=dataclasses.replace(base.distill, method=method)))


def validate_methods(base: RunConfig, methods: Sequence[str]) -> None:
    """Fail before any training if a method cannot run with these settings."""
    depths = [t.hidden_layers for t in base.teachers]
    for m in methods:
        validate_distill(cell_config(base, base.seed, m).distill, base.student.hidden_layers,
                         depths)


# --- timing ---------------------------------------------------------------------------------------


@torch.no_grad()
def inference_time(model: nn.Module, data: GraphDataset, repeats: int = 5, warmup: int = 1,
                   sparse_features: bool = False) -> float:
    """Median seconds of one eval-mode, no-autograd forward over the test split's full graphs.

    For transductive datasets that is one forward over the whole graph; for PPI one per test
    graph. ``warmup`` untimed runs first (allocator, lazy init); a handful of timed runs keep it
    cheap while the median ignores a stray slow one. ``sparse_features`` hands the models the
    features as a sparse tensor, converted once before timing (as a server would store them), so
    the first layer works on the non-zeros only.
    """
    graphs = [Data(x=g.x.to_sparse() if sparse_features else g.x, edge_index=g.edge_index)
              for g in data.splits["test"]]
    was = model.training
    model.eval()
    cuda = any(g.x.is_cuda for g in graphs)
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for g in graphs:
            model(g.x, g.edge_index)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    model.train(was)
    return statistics.median(times)


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --- the comparison ------------------------------------------------------------------------------


def _shared_config(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg.pop("seed", None)
    cfg["distill"].pop("method", None)
    return cfg


def _settings(base: RunConfig, data: GraphDataset) -> dict[str, Any]:
    """What every cell shares: the config without seed and method, and the data's identity."""
    return {"dataset": data.name, "fingerprint": data.fingerprint(),
            "config": _shared_config(base.to_dict())}


def check_settings(out: Path, base: RunConfig, data: GraphDataset, fresh: bool = False) -> None:
    """Record the shared settings, or refuse to mix cells run with different ones (``fresh``:
    the comparison starts over, so the old settings are replaced)."""
    want = json.loads(json.dumps(_settings(base, data)))  # tuples -> lists, as stored
    path = out / CONFIG_FILE
    if path.exists() and not fresh:
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise RunDirError(f"{path} is unreadable ({e}); use another --out") from None
        if isinstance(have, dict) and isinstance(have.get("config"), dict):
            # Through the dataclasses, so settings added since (with their old behaviour as the
            # default) do not make an older comparison look different.
            try:
                have["config"] = _shared_config(RunConfig.from_dict(have["config"]).to_json_dict())
            except ConfigError:
                pass  # left as stored: the comparison below reports what differs
        diff = first_difference(have, want)
        if diff:
            raise SettingsMismatch(
                f"{out} holds a comparison run with other settings: {diff}; finished cells "
                "would not be comparable. Use another --out, or the same flags to resume"
            )
        return
    write_json(path, want)


def _teacher_rows(teachers, data: GraphDataset, seed: int) -> list[dict[str, Any]]:
    return [{**model_row(t), "kind": "teacher", "method": None, "seed": seed,
             "infer_s": inference_time(t.model, data)} for t in teachers]


def _cell_rows_from_teachers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("name", "kind", "method", "layers", "params", "val", "test",
                               "train_s", "infer_s", "seed")} for r in doc["teachers"]]


def _cell_row_from_student(rec: dict[str, Any], seed: int) -> dict[str, Any]:
    s = rec["student"]
    # Student rows are named by method: one student shape, many ways of training it.
    return {"name": s["method"], "kind": "student", "method": s["method"], "layers": s["layers"],
            "params": s["params"], "val": s["val"], "test": s["test"], "train_s": s["train_s"],
            "infer_s": s["infer_s"], "seed": seed}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise RunDirError(f"{path} is unreadable ({e}); delete it to recompute that cell") from None


def run_compare(base: RunConfig, data: GraphDataset, seeds: Sequence[int],
                methods: Sequence[str], out: Path, ctx: RunContext) -> dict[str, Any]:
    """Every (seed, teachers) and (seed, method) cell, computing only those not yet finished.

    A cell being computed also saves its training state every ``ctx.checkpoint_every`` seconds,
    so an interrupted cell continues where it stopped. ``ctx.fresh`` recomputes every cell
    (``--force``).
    Each seed's directory is locked while its cells are computed, and ``out`` itself only while
    the settings are checked and the tables written: several processes can therefore fill one
    comparison with disjoint ``seeds`` (one per core), and a last call with every seed, whose
    cells are then all finished, writes the combined tables. Returns the ``compare.json`` record
    of ``seeds`` (also written, with ``compare.csv`` and ``compare.md``).
    """
    validate_methods(base, methods)
    for m in methods:
        check_data(cell_config(base, 0, m).distill, data)
    with RunLock(out, log=ctx.log):
        check_settings(out, base, data, ctx.fresh)
    cells = _run_cells(base, data, seeds, methods, out, ctx)
    record = compare_record(data, seeds, cells)
    with RunLock(out, log=ctx.log):
        write_compare(out, record)
    return record


def _run_cells(base: RunConfig, data: GraphDataset, seeds: Sequence[int],
               methods: Sequence[str], out: Path, ctx: RunContext) -> list[dict[str, Any]]:
    fresh, log = ctx.fresh, ctx.log
    dev_data = data.to(ctx.device)
    plan = [(s, m) for s in seeds for m in (None, *methods)]  # None = the seed's teachers
    todo = [(s, m) for s, m in plan if fresh or not _cell_path(out, s, m).exists()]
    if len(todo) < len(plan):
        log(f"resuming {out}: {len(plan) - len(todo)} of {len(plan)} cells already finished")
    spent: dict[str, list[float]] = {"teachers": [], "student": []}
    t_start = time.perf_counter()
    cells: list[dict[str, Any]] = []
    done = 0
    for seed in seeds:
        teachers = None  # trained or loaded when the seed's first unfinished cell needs them
        with RunLock(out / f"seed{seed}", log=log):
            for method in (None, *methods):
                path = _cell_path(out, seed, method)
                if path.exists() and not fresh:
                    doc = _read_json(path)
                    try:
                        cells += (_cell_rows_from_teachers(doc) if method is None
                                  else [_cell_row_from_student(doc, seed)])
                    except (KeyError, TypeError, ValueError, AttributeError) as e:
                        # Valid JSON, but not the record mskd wrote (edited or replaced).
                        raise RunDirError(
                            f"{path} is not a finished cell's record ({type(e).__name__}: "
                            f"{e}); delete it to recompute that cell") from None
                    continue
                done += 1
                kind = "teachers" if method is None else "student"
                log(f"[{done}/{len(todo)}] seed {seed} · {method or 'teachers'} "
                    f"(elapsed {_hms(time.perf_counter() - t_start)}, "
                    f"ETA {_eta(spent, todo[done - 1:])})")
                t0 = time.perf_counter()
                # A cell that continues saved work costs only part of a cell: timing it would
                # make the ETA of everything after it far too short.
                partial = not fresh and _has_saved_work(out / f"seed{seed}", method)
                cfg = cell_config(base, seed, method or base.distill.method)
                if teachers is None:
                    tdir = out / f"seed{seed}" / "teachers"
                    tdir.mkdir(parents=True, exist_ok=True)
                    teachers = train_or_load_teachers(cfg, data, tdir, ctx)
                if method is None:
                    rows = _teacher_rows(teachers, dev_data, seed)
                    write_json(path, {"seed": seed, "teachers": rows})
                    cells += _cell_rows_from_teachers({"teachers": rows})
                else:
                    cell_dir = path.parent
                    cell_dir.mkdir(parents=True, exist_ok=True)
                    student, details = train_student(cfg, data, teachers, cell_dir, ctx)
                    rec = results_record(cfg, data, teachers, student, details, str(ctx.device),
                                         time.perf_counter() - t0)
                    rec["seed"] = seed
                    rec["student"]["infer_s"] = inference_time(student.model, dev_data)
                    write_json(path, rec)
                    cells.append(_cell_row_from_student(rec, seed))
                if not partial:
                    spent[kind].append(time.perf_counter() - t0)
    return cells


def _has_saved_work(seed_dir: Path, method: str | None) -> bool:
    # An unfinished cell's directory holds only what it will reuse: saved training states and,
    # for the teachers, those already trained.
    cell_dir = seed_dir / (method or "teachers")
    return cell_dir.is_dir() and any(cell_dir.iterdir())


def _cell_path(out: Path, seed: int, method: str | None) -> Path:
    if method is None:
        return out / f"seed{seed}" / "teachers.json"
    return out / f"seed{seed}" / method / "results.json"


def _eta(spent: dict[str, list[float]], remaining: Sequence[tuple[int, str | None]]) -> str:
    # Teachers and students cost differently: estimate each kind from its own finished cells,
    # falling back on the other kind before both have been seen.
    means = {k: sum(v) / len(v) for k, v in spent.items() if v}
    if not means:
        return "after the first cell"
    fallback = sum(means.values()) / len(means)
    total = sum(means.get("teachers" if m is None else "student", fallback) for _, m in remaining)
    return _hms(total)


def compare_record(data: GraphDataset, seeds: Sequence[int],
                   cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``compare.json`` record from per-seed cell rows."""
    return {
        "dataset": data.name,
        "metric": metric_name(data.task),
        "seeds": list(seeds),
        "rows": aggregate_rows(cells),
        "per_seed": [dict(c) for c in cells],
    }


def write_compare(out: Path, record: dict[str, Any]) -> None:
    write_json(out / "compare.json", record)
    write_text(out / "compare.csv", compare_csv(record["rows"]))
    write_text(out / "compare.md", compare_markdown(record["rows"], record["metric"],
                                                    record["seeds"]))


# --- accuracy by node degree -----------------------------------------------------------------------

ATTENTION_NOTE = ("post-training node attention: softmax over teachers of cos(student logits, "
                  "teacher logits) / tau, with the trained mskd student and the teachers in eval "
                  "mode on the full graph, averaged over the bucket's test nodes")


def _load_model(path: Path, data: GraphDataset, device: torch.device) -> nn.Module:
    payload = load_checkpoint(path)
    check_compatible(payload, data, path)
    return model_from_checkpoint(payload, path).to(device)


ENSEMBLES_NOTE = (
    "frozen teachers only, no student: each teacher; the average of the teachers' probabilities "
    "weighted uniformly and by each teacher-side selection mode (mskd.selection; degree and gate "
    "cross-fitted on two halves of the validation nodes, so their validation scores are "
    "out-of-fold); and an oracle taking, per node (per node and label for multi-label), a teacher "
    "that is right when any is. The node and global attention modes compare teachers with a "
    "student's logits and cannot be applied to the teachers alone")


def _ensemble_rows(z_teachers: dict[str, list[list[torch.Tensor]]], data: GraphDataset,
                   names: list[str], tau: float, seed: int
                   ) -> tuple[dict[str, tuple[list, list]], dict[str, list[torch.Tensor]]]:
    """Per ensemble, its logits on every test graph and on every validation graph; and per
    selection mode, its teacher weights on every test graph ([N, K] each)."""
    test = data.splits["test"]
    val = data.splits["val"]
    transductive = len(test) == 1 and len(val) == 1 and test[0].num_nodes == val[0].num_nodes
    k = len(names)
    out: dict[str, tuple[list, list]] = {}
    weights: dict[str, list[torch.Tensor]] = {}

    def per_graph(fn) -> tuple[list, list]:
        return ([fn(torch.stack([z[i] for z in z_teachers["test"]]), g)
                 for i, g in enumerate(test)],
                [fn(torch.stack([z[i] for z in z_teachers["val"]]), g)
                 for i, g in enumerate(val)])

    ml = data.multilabel
    for j, name in enumerate(names):
        out[name] = per_graph(lambda z, g, j=j: z[j])
    uniform = torch.full((k,), 1.0 / k)
    out["uniform"] = per_graph(lambda z, g: ensemble(z.cpu(), uniform, ml))
    if transductive:
        # One graph: the validation and test nodes share its weights (cross-fitted).
        g = test[0]
        z = torch.stack([zt[0] for zt in z_teachers["test"]])
    for mode in ["confidence", *(FITTED if transductive else ())]:
        if transductive:
            w = selection_weights(mode, z, g.edge_index, g.y, data.splits["train"][0].mask,
                                  val[0].mask, tau, ml, seed)
            logits = ensemble(z.cpu().float(), w, ml)
            out[mode], weights[mode] = ([logits], [logits]), [w]
        else:
            def weigh(z, g, mode=mode):
                return selection_weights(mode, z, g.edge_index, g.y, g.mask, g.mask, tau, ml,
                                         seed)
            out[mode] = per_graph(lambda z, g, weigh=weigh: ensemble(z.cpu().float(),
                                                                      weigh(z, g), ml))
            weights[mode] = [weigh(torch.stack([z[i] for z in z_teachers["test"]]), g)
                             for i, g in enumerate(test)]
    if transductive:
        logits = calibrated_uniform(z, g.y, val[0].mask, ml, seed)
        out["uniform, calibrated teachers"] = ([logits], [logits])
    out["oracle (any teacher right)"] = per_graph(lambda z, g: oracle(z.cpu(), g.y.cpu(), ml))
    return out, weights


def _masked(logits: list[torch.Tensor], graphs) -> torch.Tensor:
    """Per-graph logits of every node -> those of the masked nodes, in split_logits' order."""
    return torch.cat([zi[g.mask.to(zi.device)] for zi, g in zip(logits, graphs)])


def _split_score(logits: list[torch.Tensor], graphs, task: str) -> float:
    y = torch.cat([g.y.cpu()[g.mask.cpu()] for g in graphs])
    return score(y, _masked(logits, graphs).cpu(), task)


SEED_DEGREE_FILE = "degree-seed.json"


def degree_analysis(
    out: Path, data: GraphDataset, base: RunConfig, seeds: Sequence[int],
    methods: Sequence[str], n_buckets: int, device: torch.device,
    log: Callable[[str], None] = print, reuse: bool = True,
) -> dict[str, Any]:
    """Test-node metric per in-degree bucket for every teacher and student of a comparison
    directory (checkpoints only, nothing is trained), mean and sample std over ``seeds``; the
    mskd student's mean attention per teacher and bucket (when it trained with ``--attention
    node``); and the headroom analysis: the frozen teachers' ensembles (:data:`ENSEMBLES_NOTE`) on
    validation and test, overall and per bucket. Returns the ``degree.json`` record.

    Each seed's share is also written to ``OUT/seed<k>/degree-seed.json`` with the sha256 of every
    checkpoint it read (:func:`seed_degree`). That record stands in for the seed when its
    checkpoints are gone (a comparison kept as its JSON files only, e.g. across machines), and,
    with ``reuse``, when they are unchanged; otherwise the seed is recomputed."""
    dev_data = data.to(device)
    test_graphs = dev_data.splits["test"]
    degrees = split_in_degrees(test_graphs)
    bucket, bounds = quantile_buckets(degrees, n_buckets)
    nb = len(bounds)
    if nb < n_buckets:
        log(f"degree ties: {nb} distinct buckets instead of {n_buckets}")
    sizes = torch.bincount(bucket, minlength=nb).tolist()
    # In the order the students see them (by depth; the sort is stable).
    tnames = [n for _, n in sorted(zip(base.teachers, teacher_names(base.teachers)),
                                   key=lambda p: p[0].hidden_layers)]
    layers_of = dict(zip(teacher_names(base.teachers),
                         (t.hidden_layers for t in base.teachers)))
    # The post-training node attention is what the mskd student weighed its teachers with only
    # when it trained with --attention node; other modes' weights do not depend on the student.
    node_mskd = METHODS["mskd"].attention_for(base.distill) == "node"
    key = {"buckets": [list(b) for b in bounds], "sizes": sizes, "teachers": tnames,
           "tau": base.distill.tau, "node_attention": node_mskd}
    records = []
    for seed in seeds:
        sdir = out / f"seed{seed}"
        rec_s = _reusable_seed_record(sdir, key, tnames, methods, reuse, log)
        if rec_s is None:
            rec_s = seed_degree(sdir, dev_data, key, tnames, methods, bucket, seed, device)
            write_json(sdir / SEED_DEGREE_FILE, rec_s)
            log(f"degree analysis: seed {seed} done")
        records.append(rec_s)
    names = tnames + list(methods)
    models = []
    for n in names:
        runs = [r["models"][n] for r in records]
        means, stds = _bucket_mean_std(runs, nb)
        models.append({"name": n, "kind": "teacher" if n in layers_of else "student",
                       "layers": layers_of.get(n),
                       "mean": means, "std": stds,
                       "per_seed": runs})
    ens: dict[str, dict[str, list]] = {}
    for r in records:
        for name, e in r["ensembles"].items():
            row = ens.setdefault(name, {"val": [], "test": [], "buckets": []})
            for k in row:
                row[k].append(e[k])
    modes = list(dict.fromkeys(m for r in records for m in r["selection"]))
    rec: dict[str, Any] = {
        "dataset": data.name, "metric": metric_name(data.task), "seeds": list(seeds),
        "degree": "in-degree (edges into the node, self-loops not counted), test nodes"
                  + (" of all test graphs" if len(test_graphs) > 1 else ""),
        "n_buckets_asked": n_buckets,
        "buckets": [{"lo": lo, "hi": hi, "nodes": n} for (lo, hi), n in zip(bounds, sizes)],
        "models": models,
        "ensembles_note": ENSEMBLES_NOTE, "ensembles_tau": base.distill.tau,
        "ensembles": [_ensemble_record(name, r, nb) for name, r in ens.items()],
        # Teacher-side selection weights (what --attention MODE gives the student), mean over
        # each bucket's test nodes and then over seeds.
        "selection_weights": {
            "teachers": tnames,
            "modes": {m: torch.tensor([r["selection"][m] for r in records
                                       if m in r["selection"]], dtype=torch.float64
                                      ).mean(0).tolist()
                      for m in modes}},
    }
    attention = [r["attention"] for r in records if r.get("attention") is not None]
    if attention:
        stacked = torch.tensor(attention, dtype=torch.float64)  # [seeds, B, K]
        rec["attention"] = {
            "note": ATTENTION_NOTE, "tau": base.distill.tau,
            "teachers": tnames,
            "mean": stacked.mean(0).tolist(),
            "std": (stacked.std(0, unbiased=True) if len(attention) > 1
                    else torch.zeros_like(stacked[0])).tolist(),
        }
    return rec


def _checkpoints(sdir: Path, tnames: Sequence[str], methods: Sequence[str]) -> dict[str, Path]:
    """The checkpoints a seed's degree analysis reads, by their path relative to ``sdir``."""
    rel = [f"teachers/{tn}.pt" for tn in tnames] + [f"{m}/student-{m}.pt" for m in methods]
    return {r: sdir / r for r in rel}


def _reusable_seed_record(sdir: Path, key: dict[str, Any], tnames: Sequence[str],
                          methods: Sequence[str], reuse: bool, log: Callable[[str], None]
                          ) -> dict[str, Any] | None:
    """The seed's stored degree record if it can stand in for recomputing it, else None."""
    path = sdir / SEED_DEGREE_FILE
    if not path.exists():
        return None
    ckpts = _checkpoints(sdir, tnames, methods)
    present = {r: p for r, p in ckpts.items() if p.exists()}
    rec = _read_json(path)
    why = None
    if not isinstance(rec, dict) or not isinstance(rec.get("models"), dict):
        why = "it is not a degree record mskd wrote"
    elif rec.get("key") != json.loads(json.dumps(key)):
        why = "it was computed with other buckets, teachers or tau"
    elif any(n not in rec["models"] for n in (*tnames, *methods)):
        why = "it lacks a model asked for"
    else:
        stored = rec.get("checkpoints")
        stored = stored if isinstance(stored, dict) else {}
        changed = [r for r, p in present.items() if stored.get(r) != file_digest(p)]
        if changed:
            why = f"{changed[0]} changed since"
        elif present and len(present) == len(ckpts) and not reuse:
            why = "--force recomputes a seed whose checkpoints are all present"
    if why is None:
        if len(present) < len(ckpts):
            log(f"{sdir.name}: checkpoints missing; using its stored degree record {path}")
        return rec
    if len(present) < len(ckpts):
        missing = next(r for r in ckpts if r not in present)
        raise RunDirError(f"{sdir / missing} is missing and {path} cannot stand in for it: "
                          f"{why}")
    log(f"{sdir.name}: recomputing its degree record ({why})")
    return None


def seed_degree(sdir: Path, data: GraphDataset, key: dict[str, Any], tnames: Sequence[str],
                methods: Sequence[str], bucket: torch.Tensor, seed: int,
                device: torch.device) -> dict[str, Any]:
    """One seed's share of :func:`degree_analysis`, from its checkpoints in ``sdir`` (``data``
    on ``device``): per model its test metric per bucket; per teachers' ensemble its validation
    and test metric and per-bucket test metric; per selection mode, and for the mskd student's
    node attention, the mean teacher weights over each bucket's test nodes ([B][K] lists)."""
    test_graphs = data.splits["test"]
    nb = len(key["sizes"])
    sizes = torch.tensor(key["sizes"], dtype=torch.float64).clamp(min=1)[:, None]
    y_test = torch.cat([g.y[g.mask] for g in test_graphs]).cpu()
    ckpts = _checkpoints(sdir, tnames, methods)

    def per_bucket(w: torch.Tensor) -> list[list[float]]:
        w = w.cpu().double()
        return (torch.zeros(nb, w.shape[1], dtype=w.dtype).index_add_(0, bucket, w)
                / sizes).tolist()

    models: dict[str, list] = {}
    t_logits = []
    full: dict[str, list[list[torch.Tensor]]] = {"test": [], "val": []}
    for tn in tnames:
        model = _load_model(ckpts[f"teachers/{tn}.pt"], data, device)
        for split, per_teacher in full.items():
            per_teacher.append([model_logits(model, g.x, g.edge_index)
                                for g in data.splits[split]])
        z = _masked(full["test"][-1], test_graphs)
        t_logits.append(z)
        models[tn] = bucket_scores(y_test, z, bucket, nb, data.task)
    rows, weights = _ensemble_rows(full, data, list(tnames), key["tau"], seed)
    ensembles = {
        name: {"val": _split_score(z_val, data.splits["val"], data.task),
               "test": _split_score(z_test, test_graphs, data.task),
               "buckets": bucket_scores(y_test, _masked(z_test, test_graphs).cpu(), bucket, nb,
                                        data.task)}
        for name, (z_test, z_val) in rows.items()}
    selection = {mode: per_bucket(_masked(ws, test_graphs)) for mode, ws in weights.items()}
    attention = None
    for m in methods:
        model = _load_model(ckpts[f"{m}/student-{m}.pt"], data, device)
        z, y = split_logits(model, test_graphs)
        models[m] = bucket_scores(y, z, bucket, nb, data.task)
        if m == "mskd" and key["node_attention"] and len(t_logits) > 1:
            attention = per_bucket(teacher_weights(z, t_logits, mode="node", tau=key["tau"]))
    return {"seed": seed, "key": key,
            "checkpoints": {r: file_digest(p) for r, p in ckpts.items()},
            "models": models, "ensembles": ensembles, "selection": selection,
            "attention": attention}


def _bucket_mean_std(runs: list[list[float | None]], nb: int
                     ) -> tuple[list[float | None], list[float | None]]:
    means, stds = [], []
    for b in range(nb):
        vals = [r[b] for r in runs if r[b] is not None]
        m, s = mean_std(vals) if vals else (None, None)
        means.append(m)
        stds.append(s)
    return means, stds


def _ensemble_record(name: str, r: dict[str, list], nb: int) -> dict[str, Any]:
    val, val_std = mean_std(r["val"])
    test, test_std = mean_std(r["test"])
    buckets, buckets_std = _bucket_mean_std(r["buckets"], nb)
    return {"name": name, "val": val, "val_std": val_std, "test": test, "test_std": test_std,
            "buckets": buckets, "buckets_std": buckets_std,
            "per_seed": {"val": r["val"], "test": r["test"]}}


def bucket_label(b: dict[str, Any]) -> str:
    rng = str(b["lo"]) if b["lo"] == b["hi"] else f"{b['lo']}-{b['hi']}"
    return f"deg {rng} (n={b['nodes']})"


def degree_markdown(rec: dict[str, Any]) -> str:
    """Per-bucket metric table (and the attention table when the mskd student is present)."""
    labels = [bucket_label(b) for b in rec["buckets"]]
    body = [[m["name"], *("–" if v is None else f"{v:.4f} ± {s:.4f}"
                          for v, s in zip(m["mean"], m["std"]))] for m in rec["models"]]
    parts = [
        (f"Test {rec['metric']} by {rec['degree']}; quantile buckets; mean ± sample std over "
         f"{len(rec['seeds'])} seed(s)."),
        "",
        markdown_table(["model", *labels], body, right=[False] + [True] * len(labels)),
    ]
    att = rec.get("attention")
    if att:
        body = [[lab, *(f"{v:.3f}" for v in row)] for lab, row in zip(labels, att["mean"])]
        parts += ["", (f"Mean attention of the mskd student per teacher (tau = {att['tau']}); "
                       f"{att['note']}."), "",
                  markdown_table(["bucket", *att["teachers"]], body,
                                 right=[False] + [True] * len(att["teachers"]))]
    sel = rec.get("selection_weights")
    if sel and sel["modes"]:
        body = [[mode, lab, *(f"{v:.3f}" for v in row)]
                for mode, table in sel["modes"].items() for lab, row in zip(labels, table)]
        parts += ["", ("Teacher-side selection weights per bucket (mskd.selection; what "
                       "`--attention MODE` gives the student), mean over the bucket's test nodes "
                       "and the seeds."), "",
                  markdown_table(["mode", "bucket", *sel["teachers"]], body,
                                 right=[False, False] + [True] * len(sel["teachers"]))]
    if rec.get("ensembles"):
        body = [[e["name"], f"{e['val']:.4f} ± {e['val_std']:.4f}",
                 f"{e['test']:.4f} ± {e['test_std']:.4f}",
                 *("–" if v is None else f"{v:.4f}" for v in e["buckets"])]
                for e in rec["ensembles"]]
        parts += ["", (f"Headroom: {rec['metric']} of the teachers' ensembles (tau = "
                       f"{rec['ensembles_tau']}); {rec['ensembles_note']}."), "",
                  markdown_table(["ensemble", "val", "test", *labels], body,
                                 right=[False] + [True] * (2 + len(labels)))]
    return "\n".join(parts) + "\n"


def existing_seeds_methods(out: Path) -> tuple[list[int], list[str]]:
    """Seeds and methods recorded by the last ``compare.json`` of a comparison directory."""
    path = out / "compare.json"
    if not path.exists():
        raise RunDirError(f"{out} holds no compare.json: run `mskd compare --out {out}` first")
    rec = _read_json(path)
    methods = [r["method"] for r in rec["rows"] if r["kind"] == "student"]
    return list(rec["seeds"]), methods


def load_settings(out: Path) -> dict[str, Any]:
    path = out / CONFIG_FILE
    if not path.exists():
        raise RunDirError(f"{out} is not a comparison directory (no {CONFIG_FILE})")
    return _read_json(path)
