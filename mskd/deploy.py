"""Using a trained model outside mskd: per-node predictions as CSV, and export to TorchScript.

Export and PyG (checked against PyG 2.8.1 and torch 2.13; see ``docs/performance.md``):

- ``torch.jit.script`` does not compile PyG's ``GATConv`` in PyG 2.8: its
  ``if return_attention_weights:`` cannot be cast from ``Optional`` to ``bool`` under TorchScript
  (an open upstream bug since PyG's fix of ``return_attention_weights=False``). GCN and SAGE
  convolutions do script, but one method for every architecture is simpler to trust.
- ``torch.jit.trace`` works for all three: the forward pass has no data-dependent Python control
  flow, only config-dependent branches (residual or not) and one ``min`` of two sizes inside
  GATConv that are equal for a non-bipartite graph. A trace can still bake a shape into the
  program, so :func:`export_torchscript` checks the traced model against the original on a second
  graph of another size before it writes anything.
- TorchScript traces PyG's layers: a model on mskd's fused layers (``mskd.convs``) is exported
  as its PyG twin with the same weights (:func:`exportable`), since the fused layers' custom
  autograd function and CSR tensors do not trace. The two compute the same function.
- ONNX (``torch.onnx.export(dynamo=True)``, which captures with ``torch.export``) with dynamic
  node and edge counts: PyG's GATConv does not capture (its self-loop handling selects edges with
  a boolean mask, a data-dependent size), so ONNX exports the fused layers in their static-shape
  form (:func:`onnx_model`), for every architecture. The file is checked with onnxruntime on a
  graph of another size before it is written. Needs the ``onnx`` extra (onnx, onnxscript,
  onnxruntime); without it ``--format onnx`` is refused with that reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .convs import make_static
from .data import SINGLE, GraphDataset
from .evaluate import model_logits, predict_labels
from .models import GNN
from .runs import new_file_mode, write_bytes, write_text

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".torchscript", "onnx": ".onnx"}


class ExportError(ValueError):
    """The model cannot be exported in the requested format; one line for the CLI."""


# --- predictions ---------------------------------------------------------------------------------


def _node_splits(data: GraphDataset) -> np.ndarray:
    """Split of every node of a transductive graph: train / val / test / none (unlabelled)."""
    n = int(data.splits["train"][0].num_nodes)
    names = np.full(n, "none", dtype=object)
    for split in ("train", "val", "test"):
        names[data.splits[split][0].mask.cpu().numpy()] = split
    return names


def predictions_csv(model: GNN, data: GraphDataset, chunk_size: int | None = None) -> str:
    """Per-node predictions of ``model`` on every node of ``data``, as CSV text.

    ``chunk_size``: compute the logits by exact layer-wise inference in chunks gathering at most
    that many rows (:func:`mskd.evaluate.model_logits`), for graphs whose whole-graph forward does
    not fit in memory; ``None`` runs one whole-graph forward.

    Columns: ``split`` (train/val/test, or none for an unlabelled node of a transductive graph),
    ``graph`` (inductive datasets only: the graph's position in its split, PyG's order), ``node``
    (row of the node in its graph), then for single-label data ``pred`` (argmax class) and
    ``prob_0..prob_{C-1}`` (softmax), for multi-label data ``pred_0..pred_{C-1}`` (1 where
    sigmoid >= 0.5) and ``prob_0..prob_{C-1}`` (sigmoid). Predictions follow the evaluator's rule
    (:func:`mskd.evaluate.predict_labels`), so they are what the reported scores count.
    """
    c = data.num_classes
    if data.transductive:
        g = data.splits["train"][0]
        parts = [(None, g, _node_splits(data))]  # every split holds the same full graph
    else:
        parts = [(i, g, np.full(int(g.num_nodes), split, dtype=object))
                 for split in ("train", "val", "test")
                 for i, g in enumerate(data.splits[split])]
    preds = ([f"pred_{k}" for k in range(c)] if data.multilabel else ["pred"])
    header = ["split"] + ([] if data.transductive else ["graph"]) + ["node"] + preds + \
        [f"prob_{k}" for k in range(c)]
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for gi, g, splits in parts:
        logits = model_logits(model, g.x, g.edge_index, chunk_size).cpu()
        prob = torch.sigmoid(logits) if data.multilabel else torch.softmax(logits, dim=1)
        pred = predict_labels(logits, data.task).to(torch.int64).view(logits.shape[0], -1)
        ids = torch.arange(logits.shape[0]).unsqueeze(1)
        ints = torch.cat([ids, pred], dim=1).numpy()
        body = io.StringIO()
        # One formatted block per graph: a Python loop over 57k PPI rows x 242 columns would be
        # the slow part otherwise.
        np.savetxt(body, np.hstack([ints, prob.numpy().astype(np.float64)]), delimiter=",",
                   fmt=["%d"] * ints.shape[1] + ["%.6g"] * c)
        prefix = "" if gi is None else f",{gi}"
        for split, line in zip(splits, body.getvalue().splitlines()):
            out.write(f"{split}{prefix},{line}\n")
    return out.getvalue()


def write_predictions(model: GNN, data: GraphDataset, path: Path,
                      chunk_size: int | None = None) -> int:
    """Write :func:`predictions_csv` atomically to ``path``; returns the number of rows."""
    text = predictions_csv(model, data, chunk_size)
    write_text(path, text)
    return text.count("\n") - 1


# --- export --------------------------------------------------------------------------------------


class LogitsOnly(nn.Module):
    """The model as a deployed program sees it: ``(x, edge_index) -> logits``.

    Shapes:
        x: [N, F] float32, edge_index: [2, E] int64 -> [N, C] logits (apply softmax or sigmoid)
    """

    def __init__(self, model: GNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(x, edge_index)[0]


def example_graph(num_nodes: int, num_edges: int, num_features: int, seed: int
                  ) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(num_nodes, num_features, generator=gen),
            torch.randint(0, num_nodes, (2, num_edges), generator=gen))


def default_out(checkpoint: Path, fmt: str) -> Path:
    # Not ``.pt``: ``mskd evaluate --run DIR`` reads every DIR/*.pt as a checkpoint.
    return checkpoint.with_suffix(SUFFIXES[fmt])


def exportable(model: GNN) -> GNN:
    """``model`` on PyG's layers (a copy with the same weights if it is on the fused ones), in
    eval mode on the CPU: the form both exporters trace."""
    model = model.cpu()
    if model.conv_impl != "pyg":
        model = model.with_conv("pyg")
    return model.eval()


def export_torchscript(model: GNN, path: Path, meta: dict[str, Any]) -> None:
    """Trace ``model`` (eval mode, on PyG's layers: :func:`exportable`) to TorchScript, check it
    on another graph, write it atomically.

    ``meta`` is stored inside the file as ``mskd.json`` (``torch.jit.load(path,
    _extra_files={"mskd.json": ""})`` reads it back).
    """
    model = exportable(model)
    wrapped = LogitsOnly(model).eval()
    trace_inputs = example_graph(11, 40, model.in_channels, seed=0)
    with torch.no_grad(), warnings.catch_warnings():
        # GATConv's min() of two sizes warns that the trace may not generalise; the check on
        # another graph below is what decides that, so the warning would only alarm users.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # check_trace=False: the check below uses a graph of another size, which is the one
        # that catches a shape baked into the trace.
        traced = torch.jit.trace(wrapped, trace_inputs, check_trace=False)
        check = example_graph(29, 150, model.in_channels, seed=1)
        if not torch.allclose(traced(*check), wrapped(*check), rtol=1e-4, atol=1e-5):
            raise ExportError("the traced TorchScript model differs from the original on a "
                              "graph of another size; it is not written")
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"mskd.json": json.dumps(meta)})
    write_bytes(path, buf.getvalue())


def onnx_unavailable() -> str | None:
    """Why ``--format onnx`` cannot run here, or None when it can be tried."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(m) is None]
    if missing:
        return (f"--format onnx needs the {', '.join(missing)} package"
                f"{'s' if len(missing) > 1 else ''}, not installed here "
                '(pip install -e ".[onnx]"); use --format torchscript')
    return None


def onnx_model(model: GNN) -> GNN:
    """A copy of ``model`` on the fused layers in their static-shape form (``mskd.convs``), eval
    mode, CPU: what ``torch.onnx.export`` captures with dynamic node and edge counts."""
    twin = model.cpu().with_conv("fused")
    return make_static(twin).eval()


def export_onnx(model: GNN, path: Path, task: str = SINGLE) -> None:
    """ONNX through ``torch.onnx.export(dynamo=True)`` with dynamic node and edge counts, checked
    before it is written: onnxruntime runs the exported program on a graph of another size than
    the one it was captured on, and its logits must match PyTorch's (within 1e-4) with the same
    predicted labels under ``task``'s rule (:func:`mskd.evaluate.predict_labels`). Needs the
    ``onnx`` extra (onnx, onnxscript, onnxruntime); any failure is an :class:`ExportError` and
    leaves no file.
    """
    why = onnx_unavailable()
    if why:
        raise ExportError(why)
    static = onnx_model(model)
    wrapped = LogitsOnly(static).eval()
    inputs = example_graph(11, 40, model.in_channels, seed=0)
    dims = {"x": {0: torch.export.Dim("num_nodes")}, "edge_index": {1: torch.export.Dim("num_edges")}}
    # Written beside the target and renamed over it: a failed export leaves no partial file. A
    # fresh name (mkstemp creates it exclusively), never a fixed one, where a planted symbolic
    # link would redirect the write.
    # Its folder is made as for every other file mskd writes; the file gets a new file's mode.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, new_file_mode())
    os.close(fd)
    tmp = Path(name)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's progress and deprecation notes
            program = torch.onnx.export(wrapped, inputs, dynamo=True, dynamic_shapes=dims,
                                        input_names=["x", "edge_index"],
                                        output_names=["logits"])
        program.save(tmp)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; all mean "no file"
        tmp.unlink(missing_ok=True)
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ExportError(f"ONNX export failed: {first}") from None
    try:
        _check_onnx(tmp, model, task)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_onnx(file: Path, model: GNN, task: str) -> None:
    import onnxruntime

    x, edge_index = example_graph(29, 150, model.in_channels, seed=1)
    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"x": x.numpy(), "edge_index": edge_index.numpy()})[0]
    want = model_logits(exportable(model), x, edge_index).numpy()
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
        raise ExportError("the ONNX model differs from the original on a graph of another size "
                          "(onnxruntime); it is not written")
    # Close logits can still fall on either side of a tie or of the threshold; what a user of
    # the file sees are the labels, so those must agree exactly.
    if not torch.equal(predict_labels(torch.from_numpy(got), task),
                       predict_labels(torch.from_numpy(want), task)):
        raise ExportError("the ONNX model's predicted labels differ from the original's; it is "
                          "not written")
