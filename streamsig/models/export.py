"""Native model -> ONNX bytes with one float32 input ``features`` and one output ``probabilities``.

sklearn models go through skl2onnx with the ZipMap disabled (a plain [n, 3]
tensor, not a list of dicts); LightGBM through onnxmltools; the LSTM and the Transformer through
``torch.onnx.export``. The ``label`` output the tree and linear converters add
is dropped, so every model has the same single output.

Every export then goes through :func:`canonical`, so its bytes depend only on
the fitted model and the converter's graph, not on the process that made it:
the converters collect ``opset_import`` in a ``set``, whose order follows
string hashing and insertion history, and stamp their own name, version and
doc strings into the file. Converter versions are recorded in the model card
(``library_versions``) instead.

Tree thresholds: LightGBM stores double thresholds and onnxmltools rounds them
to the nearest float32. A float32 input ``x`` equal to that rounded value but
above the double threshold then takes the other branch (seen on repeated
discrete values such as returns of a tick grid). Before converting, each
threshold ``t`` is replaced by the largest float32 not above it, which sends
every float32 input the same way as ``t`` does, so the native model's answers
on float32 inputs are unchanged and the ONNX graph reproduces them.
(skl2onnx makes the same kind of adjustment for sklearn trees itself.)

>>> float32_floor(np.array([0.1, -0.1, 0.5])).tolist() == [0.09999999403953552, -0.10000000149011612, 0.5]
True
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
#: opsets for the sklearn converters (the LightGBM converter picks its own)
SKLEARN_OPSET = {"": 17, "ai.onnx.ml": 3}


def _single_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep only the probabilities output and the nodes it needs.

    Pass-through steps at the end of the output's path (``Identity``, ``Mul`` by
    an all-ones constant, as the LightGBM converter emits) are dropped: each
    node costs time per call and these change no value.
    """
    g = model.graph
    keep = [o for o in g.output if o.name == OUTPUT_NAME]
    if len(keep) != 1:
        raise ValueError(f"converted model has no {OUTPUT_NAME!r} output")
    del g.output[:]
    g.output.extend(keep)
    producer = {o: n for n in g.node for o in n.output}
    ones = {i.name for i in g.initializer if np.all(numpy_helper.to_array(i) == 1)}
    name, skipped = OUTPUT_NAME, []
    while name in producer:
        node = producer[name]
        if node.op_type == "Identity" or (node.op_type == "Mul" and node.input[1] in ones):
            skipped.append(node)
            name = node.input[0]
        else:
            break
    if skipped and name in producer:
        out = producer[name].output
        out[list(out).index(name)] = OUTPUT_NAME
    else:
        skipped = []
    needed, nodes = {OUTPUT_NAME}, []
    for node in reversed(g.node):
        if any(node is n for n in skipped):
            continue
        if any(o in needed for o in node.output):
            nodes.append(node)
            needed.update(node.input)
    del g.node[:]
    g.node.extend(reversed(nodes))
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    return model


def canonical(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place) with every field that may depend on process state fixed.

    ``opset_import`` gets one entry per domain (the highest version asked for),
    sorted by domain; the producer is ``streamsig`` with no version; model
    domain, model version and all doc strings are cleared; the graph name (a
    random uuid from the sklearn converter) is ``streamsig``. Operators,
    tensors and names are not touched.

    >>> m = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []), producer_name="x",
    ...     opset_imports=[onnx.helper.make_opsetid("ai.onnx.ml", 1), onnx.helper.make_opsetid("", 9),
    ...                    onnx.helper.make_opsetid("", 17)])
    >>> [(o.domain, o.version) for o in canonical(m).opset_import], m.producer_name, m.graph.name
    ([('', 17), ('ai.onnx.ml', 1)], 'streamsig', 'streamsig')
    """
    versions: dict[str, int] = {}
    for o in model.opset_import:
        versions[o.domain] = max(versions.get(o.domain, 0), o.version)
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, versions[d]) for d in sorted(versions))
    model.producer_name = "streamsig"
    for field in ("producer_version", "domain", "model_version", "doc_string"):
        model.ClearField(field)  # proto2: an explicit "" or 0 would still be written
    props = sorted((p.key, p.value) for p in model.metadata_props)
    del model.metadata_props[:]
    model.metadata_props.extend(onnx.StringStringEntryProto(key=k, value=v) for k, v in props)
    g = model.graph
    g.name = "streamsig"
    for part in (g, *g.node, *g.input, *g.output, *g.value_info, *g.initializer):
        part.ClearField("doc_string")
    return model


def float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each value of ``t`` (as float64)."""
    t = np.asarray(t, dtype=np.float64)
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f.astype(np.float64)


def lightgbm_float32_booster(model: Any) -> Any:
    """A copy of a fitted LightGBM model's booster with float32-floored split thresholds."""
    import lightgbm as lgb

    # tree_sizes gives each tree's byte length, which the edit changes; without it
    # LightGBM reads the trees one after another.
    lines = [ln for ln in model.booster_.model_to_string().split("\n") if not ln.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if line.startswith("num_cat=") and line != "num_cat=0":
            raise ValueError("categorical LightGBM splits are not supported for export")
        if line.startswith("threshold="):
            vals = float32_floor(np.array(line[len("threshold="):].split(), dtype=np.float64))
            lines[i] = "threshold=" + " ".join(repr(float(v)) for v in vals)
    return lgb.Booster(model_str="\n".join(lines))


def to_onnx(model: Any, model_type: str, n_features: int) -> bytes:
    """Serialized ONNX for a model from :func:`streamsig.models.estimators.fit_native`,
    in :func:`canonical` form."""
    if model_type in ("lstm", "transformer"):  # already one output, fixed names
        return canonical(onnx.load_from_string(model.onnx_bytes(INPUT_NAME, OUTPUT_NAME))).SerializeToString()
    if model_type == "lightgbm":
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType
        onx = convert_lightgbm(lightgbm_float32_booster(model), initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                               zipmap=False)
    elif model_type in ("logreg", "rf"):
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType as SkFloat
        onx = convert_sklearn(model, initial_types=[(INPUT_NAME, SkFloat([None, n_features]))],
                              options={"zipmap": False}, target_opset=SKLEARN_OPSET)
    else:
        raise ValueError(f"no ONNX export for model type {model_type!r}")
    return canonical(_single_output(onx)).SerializeToString()


def session(onnx_bytes: bytes) -> ort.InferenceSession:
    """A CPU session with one intra-op and one inter-op thread, sequential execution."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


def parity(onnx_bytes: bytes, X: np.ndarray, native_proba: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime's and the native probabilities on ``X``."""
    got = session(onnx_bytes).run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, np.float32)})[0]
    return float(np.max(np.abs(got.astype(np.float64) - native_proba))) if len(X) else 0.0
