"""The GPU form of a model: dequantized, attention fused, fp16, pooling inside the graph.

Built once per (model sha256, precision, pooling) with the ``onnx`` package and onnxruntime's own
transformers tools (``onnxruntime.transformers``, shipped in the onnxruntime wheel), and kept in the
user's cache (``<cache>/graphs``), written atomically beside a sha256 that is checked on every use:
a torn or corrupt file is rebuilt, never loaded.

The steps:

1. **Dequantize.** Weights stored as int8 with a ``Cast`` and ``Mul`` (or ``DequantizeLinear``) in
   front of fp32 MatMuls become plain float initializers: the same numbers, computed once.
2. **Strip** the softmax NaN guards of PyTorch's attention export (:mod:`vecpipe.encode.graph`).
3. **Fuse attention.** Each ``softmax(Q K^T * s + mask) V`` block of a PyTorch
   ``scaled_dot_product_attention`` (or eager) export becomes one ``com.microsoft.MultiHeadAttention``
   over the three projections, with the batch's key lengths as its 1-D padding mask (vecpipe pads on
   the right), which lets onnxruntime's CUDA provider use its fused attention kernels. onnxruntime's
   transformers optimizer then fuses LayerNorm, Gelu and bias adds.
4. **Check** the rewritten fp32 graph against the original on the CPU with a probe batch (cosine
   > 0.9999 per row); a fusion that does not reproduce the model is dropped, not shipped.
5. **fp16** (``precision="fp16"``): onnxruntime's float16 converter, inputs and outputs kept.
6. **Pool** inside the graph (mean over the mask, CLS or max) in fp32, so only ``[batch, dim]``
   leaves the GPU: output ``sentence_embedding``. (The int8 CPU form, :func:`quantize_int8`, keeps
   the hidden states as its output and is pooled by the encoder, bit-exactly whatever the batch.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from vecpipe.encode.model import ModelSpec, cache_root
from vecpipe.errors import ModelError

PRECISIONS = ("fp32", "fp16", "int8")
BUILDER_VERSION = 3
OUTPUT = "sentence_embedding"
_MS = "com.microsoft"


class FormUnavailable(ModelError):
    """The model is sound but this form of it cannot be made (the CPU's default then runs it as it is)."""


def fuse_enabled() -> bool:
    """``VECPIPE_GPU_ATTENTION=unfused`` keeps attention as the model has it (for troubleshooting a
    CUDA build whose fused attention kernels misbehave)."""
    return os.environ.get("VECPIPE_GPU_ATTENTION", "").lower() != "unfused"


def graph_path(spec: ModelSpec, precision: str, pooling: str) -> Path:
    form = "" if fuse_enabled() else "-unfused"
    return cache_root() / "graphs" / f"{spec.sha256[:24]}-{precision}-{pooling}{form}-v{BUILDER_VERSION}.onnx"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_graph(spec: ModelSpec, precision: str, pooling: str, note: Any = None) -> Path:
    """The GPU form of ``spec`` in the cache, built (or rebuilt when corrupt) first if needed."""
    from vecpipe.formats.targets import atomic_path

    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    path = graph_path(spec, precision, pooling)
    sums = path.with_name(path.name + ".sha256")
    if path.exists() and sums.exists():
        try:
            if sums.read_text().strip() == _digest(path):
                return path
        except OSError:
            pass
        if note:
            note(f"the cached graph {path} is damaged; rebuilding it")
        note = None  # said once
    where = "CPU" if precision == "int8" else "GPU"
    data = build_graph(spec, precision, pooling,
                       on_start=lambda: note and note(f"building the {precision} {where} form of {spec.name} (once; cached in {path.parent})"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        with atomic_path(sums) as tmp:
            tmp.write_text(hashlib.sha256(data).hexdigest() + "\n")
    except OSError as exc:
        raise ModelError(f"cannot write the GPU graph to {path.parent}: {exc.strerror or exc}") from None
    return path


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelError("building the GPU form of a model needs the onnx package: pip install 'vecpipe[gpu]'") from None
    return onnx


def build_graph(spec: ModelSpec, precision: str, pooling: str, check: bool = True, on_start: Any = None) -> bytes:
    """The serialised GPU (or int8 CPU) form of ``spec`` (see the module's steps); ``on_start`` is
    called once the model has been read, before the work."""
    onnx = _onnx()
    from vecpipe.encode.graph import strip_softmax_nan_guards

    try:
        model = onnx.load(str(spec.onnx_path))
    except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
        raise ModelError(f"{spec.onnx_path}: cannot read the model: {str(exc).splitlines()[0][:200]}") from None
    if on_start is not None:
        on_start()
    fold_dequantize(model)
    stripped = strip_softmax_nan_guards(model.SerializeToString())
    if stripped is not None:
        model = onnx.load_from_string(stripped)
    original = model
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    if fuse_enabled() and fuse_attention(fused, _num_heads(spec, fused)) and check and not _same_outputs(original, fused):
        fused = original  # the fusion did not reproduce the model: ship the unfused graph
    fused = _ort_fusions(fused)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        fused = convert_float_to_float16(fused, keep_io_types=True, disable_shape_infer=True)
    if precision == "int8":
        quantize_int8(fused)
        if check:
            worst = _min_cosine(original, fused)
            if worst < INT8_MIN_COSINE:
                raise FormUnavailable(f"its int8 form strays from the model (cosine {worst:.4f} on a probe batch, "
                                      f"below {INT8_MIN_COSINE})")
        # pooled by the encoder, as for the model as it is: onnxruntime's ReduceSum over the padded
        # axis groups its terms by the padded length, so a text's vector would depend on its batch
        return fused.SerializeToString()
    add_pooling(fused, pooling)
    return fused.SerializeToString()


#: The int8 CPU form is kept only when every token's hidden state of a probe batch stays this close
#: (cosine) to the model's (the default model's worst is 0.9955); else the CPU runs the model as it is.
INT8_MIN_COSINE = 0.98


def quantize_int8(model: Any) -> None:
    """The CPU form: every MatMul over a constant 2-D weight runs as an integer ``MatMulInteger``.

    Weights are quantized per output column to 8 bits (a model stored as int8 per column, like the
    default, gets its own int8 values back exactly). Activations are quantized **per row**: each
    token's vector gets its own scale, so a row's codes depend on that row alone. (onnxruntime's
    dynamic quantization takes one scale per batch, which makes a text's vector depend on the batch
    it is embedded with: cosine down to 0.984 between batch sizes 16 and 3 on the default model.)
    Rows are quantized once per tensor and shared (the query, key and value projections read the
    same input). Both sides are stored as uint8 around a zero point of 128: onnxruntime's u8s8 AVX2
    kernel sums pairs of products in saturating 16-bit lanes, which costs accuracy (mean cosine to
    the model 0.9968 against 0.9982), while its u8u8 kernel does not saturate (and is somewhat slower
    on an AVX2 machine without VNNI). ``MatMulIntegerToFloat``, which scales as it writes floats, was
    tried and not taken: its rounding moved SciFact's nDCG@10 by -0.003.
    """

    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    weights = {t.name: t for t in g.initializer}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    if opset < 13:
        raise FormUnavailable(f"the int8 CPU form needs ONNX opset 13 or later (the model has {opset})")
    consts = [helper.make_tensor("vecpipe_q_inv127", TensorProto.FLOAT, [], [1.0 / 127.0]),
              helper.make_tensor("vecpipe_q_tiny", TensorProto.FLOAT, [], [1e-30]),
              helper.make_tensor("vecpipe_q_zp", TensorProto.UINT8, [], [128]),
              helper.make_tensor("vecpipe_q_axis1", TensorProto.INT64, [1], [1]),
              helper.make_tensor("vecpipe_q_first", TensorProto.INT64, [1], [0]),
              helper.make_tensor("vecpipe_q_last", TensorProto.INT64, [1], [-1])]
    nodes: list[Any] = []
    inits: list[Any] = []
    rows: dict[str, tuple[str, str, str]] = {}  # activation -> (codes, per-row scales [M, 1], leading shape)

    def quantized_rows(x: str, k: int) -> tuple[str, str, str]:
        if x not in rows:
            p = f"vecpipe_q{len(rows)}_"
            inits.append(numpy_helper.from_array(np.array([-1, k], dtype=np.int64), p + "k"))
            reduce = (helper.make_node("ReduceMax", [p + "abs", "vecpipe_q_axis1"], [p + "amax"], keepdims=0) if opset >= 18
                      else helper.make_node("ReduceMax", [p + "abs"], [p + "amax"], axes=[1], keepdims=0))
            nodes.extend([
                helper.make_node("Reshape", [x, p + "k"], [p + "x"]),
                helper.make_node("Abs", [p + "x"], [p + "abs"]),
                reduce,
                helper.make_node("Mul", [p + "amax", "vecpipe_q_inv127"], [p + "s0"]),
                helper.make_node("Max", [p + "s0", "vecpipe_q_tiny"], [p + "s"]),
                helper.make_node("Shape", [p + "s"], [p + "m"]),
                helper.make_node("Expand", ["vecpipe_q_zp", p + "m"], [p + "zp"]),
                helper.make_node("QuantizeLinear", [p + "x", p + "s", p + "zp"], [p + "q"], axis=0),
                helper.make_node("Unsqueeze", [p + "s", "vecpipe_q_last"], [p + "scol"]),
                helper.make_node("Shape", [x], [p + "shape"]),
                helper.make_node("Slice", [p + "shape", "vecpipe_q_first", "vecpipe_q_last"], [p + "lead"]),
            ])
            rows[x] = (p + "q", p + "scol", p + "lead")
        return rows[x]

    for i, n in enumerate(list(g.node)):
        w = numpy_helper.to_array(weights[n.input[1]]) if (n.op_type == "MatMul" and len(n.input) == 2
                                                           and n.input[1] in weights) else None
        if w is None or w.ndim != 2 or w.dtype.kind != "f":
            nodes.append(n)
            continue
        w = w.astype(np.float32)
        scale = np.maximum(np.abs(w).max(axis=0), np.float32(1e-30)) / np.float32(127)
        codes = (np.clip(np.rint(w / scale), -127, 127) + 128).astype(np.uint8)
        q, scol, lead = quantized_rows(n.input[0], w.shape[0])
        p = f"vecpipe_mm{i}_"
        inits += [numpy_helper.from_array(codes, p + "w"), numpy_helper.from_array(scale.astype(np.float32), p + "ws"),
                  numpy_helper.from_array(np.array([w.shape[1]], dtype=np.int64), p + "n")]
        nodes.extend([
            helper.make_node("MatMulInteger", [q, p + "w", "vecpipe_q_zp", "vecpipe_q_zp"], [p + "y32"]),
            helper.make_node("Cast", [p + "y32"], [p + "yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "yf", scol], [p + "ya"]),
            helper.make_node("Mul", [p + "ya", p + "ws"], [p + "y"]),
            helper.make_node("Concat", [lead, p + "n"], [p + "shape"], axis=0),
            helper.make_node("Reshape", [p + "y", p + "shape"], [n.output[0]]),
        ])
    if not rows:
        raise FormUnavailable("the model has no MatMul over a constant weight: nothing for the int8 CPU form to quantize")
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(consts + inits)
    _drop_dead(model)


# -- 1. dequantize ---------------------------------------------------------------------------------


def fold_dequantize(model: Any) -> int:
    """Replace ``Mul(Cast(int8 W), scale)`` and ``DequantizeLinear(W, scale[, zero])`` over constant
    inputs by one float initializer. Returns how many were folded."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    folded = 0
    drop: set[int] = set()
    new: dict[str, np.ndarray] = {}
    for node in g.node:
        value = None
        if node.op_type == "Mul" and len(node.input) == 2:
            for a, b in (node.input, node.input[::-1]):
                cast = producers.get(a)
                if cast is not None and cast.op_type == "Cast" and cast.input[0] in inits and b in inits:
                    q = numpy_helper.to_array(inits[cast.input[0]])
                    if q.dtype.kind in "iu":
                        value = q.astype(np.float32) * numpy_helper.to_array(inits[b]).astype(np.float32)
                        drop.add(id(cast))
                        break
        elif node.op_type == "DequantizeLinear" and all(i in inits for i in node.input if i):
            q = numpy_helper.to_array(inits[node.input[0]])
            scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else 0.0
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale = scale.reshape(shape)
                zero = np.reshape(zero, shape) if np.ndim(zero) else zero
            value = (q.astype(np.float32) - zero) * scale
        if value is not None:
            new[node.output[0]] = value.astype(np.float32)
            drop.add(id(node))
            folded += 1
    if not folded:
        return 0
    kept = [n for n in g.node if id(n) not in drop]
    used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    # A Cast whose int8 input also feeds something else stays (it is only dropped when unused).
    kept = [n for n in g.node if id(n) not in drop or (n.op_type == "Cast" and n.output[0] in used)]
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    g.initializer.extend(numpy_helper.from_array(v, name) for name, v in new.items())
    return folded


# -- 3. attention fusion ---------------------------------------------------------------------------


def _num_heads(spec: ModelSpec, model: Any) -> int | None:
    import json

    for path in (spec.tokenizer_path.parent / "config.json", spec.onnx_path.parent / "config.json"):
        try:
            heads = json.loads(path.read_text()).get("num_attention_heads")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(heads, int) and heads > 0:
            return heads
    return None


def _scalar(model: Any, name: str, producers: dict[str, Any]) -> float | None:
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            arr = numpy_helper.to_array(t)
            return float(arr.reshape(-1)[0]) if arr.size == 1 else None
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                arr = numpy_helper.to_array(a.t)
                return float(arr.reshape(-1)[0]) if arr.size == 1 else None
    return None


def _projection(model: Any, name: str, producers: dict[str, Any], scale: list[float]) -> str | None:
    """Walk back from a 4-D attention operand through Reshape/Transpose/scalar Mul to the 3-D
    projection it came from; scalar multipliers met on the way are appended to ``scale``."""
    for _ in range(12):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type in ("Reshape", "Transpose"):
            name = node.input[0]
        elif node.op_type in ("Mul", "Div"):
            c = _scalar(model, node.input[1], producers)
            if c is None:
                return None
            scale.append(c if node.op_type == "Mul" else 1.0 / c)
            name = node.input[0]
        elif node.op_type in ("Add", "MatMul", "Gemm"):
            return name
        else:
            return None
    return None


def fuse_attention(model: Any, num_heads: int | None) -> int:
    """Rewrite each attention block into ``com.microsoft.MultiHeadAttention``; returns how many."""
    from onnx import TensorProto, helper

    g = model.graph
    if num_heads is None:
        return 0
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    mask_input = next((i.name for i in g.input if i.name == "attention_mask"), None)
    if mask_input is None:
        return 0
    lengths = "vecpipe_key_lengths"
    new_nodes: list[Any] = []
    fused = 0
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        add = producers.get(sm.input[0])
        if add is None or add.op_type != "Add":
            continue
        qk = next((producers[i] for i in add.input if i in producers and producers[i].op_type == "MatMul"), None)
        if qk is None:
            continue
        outs = consumers.get(sm.output[0], [])
        if len(outs) != 1 or outs[0].op_type != "MatMul" or outs[0].input[0] != sm.output[0]:
            continue
        pv = outs[0]
        nxt = consumers.get(pv.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Transpose":
            continue
        perm = next((list(a.ints) for a in nxt[0].attribute if a.name == "perm"), None)
        after = consumers.get(nxt[0].output[0], [])
        if perm != [0, 2, 1, 3] or len(after) != 1 or after[0].op_type != "Reshape":
            continue
        out_name = after[0].output[0]
        scale: list[float] = []
        q = _projection(model, qk.input[0], producers, scale)
        k = _projection(model, qk.input[1], producers, scale)
        v = _projection(model, pv.input[1], producers, [])
        if not (q and k and v):
            continue
        s = float(np.prod(scale)) if scale else None
        attrs: dict[str, Any] = {"num_heads": num_heads}
        if s is not None:
            attrs["scale"] = s
        new_nodes.append(helper.make_node("MultiHeadAttention", [q, k, v, "", lengths], [out_name],
                                          name=f"vecpipe_mha_{fused}", domain=_MS, **attrs))
        # the old Reshape no longer produces out_name
        after[0].output[0] = f"{out_name}_unfused"
        fused += 1
    if not fused:
        return 0
    new_nodes[:0] = [
        helper.make_node("Cast", [mask_input], ["vecpipe_mask_i32"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["vecpipe_mask_i32", "vecpipe_axis1"], [lengths], keepdims=0),
    ]
    g.initializer.append(helper.make_tensor("vecpipe_axis1", TensorProto.INT64, [1], [1]))
    g.node.extend(new_nodes)
    _topological(model)
    _drop_dead(model)
    if not any(o.domain == _MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS, 1))
    del g.value_info[:]
    return fused


def _topological(model: Any) -> None:
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ModelError("the fused graph has a cycle")  # pragma: no cover - a bug, not user input
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def _drop_dead(model: Any) -> None:
    g = model.graph
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        alive = [n for n in g.node if any(o in used for o in n.output)]
        if len(alive) == len(g.node):
            break
        del g.node[:]
        g.node.extend(alive)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)


def _ort_fusions(model: Any) -> Any:
    """onnxruntime's transformers optimizer, graph-level fusions only (LayerNorm, Gelu, bias adds)."""
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_by_fusion
    except ImportError:  # an onnxruntime without its transformers tools: the graph stays as it is
        return model
    options = FusionOptions("bert")
    options.enable_attention = False  # ours (above) knows the scaled_dot_product_attention export
    options.enable_embed_layer_norm = False  # it would replace the attention_mask input
    import logging

    log = logging.getLogger("onnxruntime.transformers")  # its advice ("model producer not matched") is not the user's
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        optimized = optimize_by_fusion(model, model_type="bert", num_heads=0, hidden_size=0, optimization_options=options)
    except Exception:  # noqa: BLE001 - an optimizer failure leaves the (correct) unoptimized graph
        return model
    finally:
        log.setLevel(level)
    return optimized.model


# -- 4. check ----------------------------------------------------------------------------------------


def _probe_outputs(model: Any) -> np.ndarray:
    from vecpipe.encode import runtime

    ort = runtime.onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(3, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    feed = {}
    for i in sess.get_inputs():
        feed[i.name] = ids if i.name == "input_ids" else mask if i.name == "attention_mask" else np.zeros_like(ids)
    out = sess.run(None, feed)[0].astype(np.float64)
    return out * mask[:, :, None] if out.ndim == 3 else out


def _min_cosine(a: Any, b: Any) -> float:
    """The lowest cosine between the two graphs' outputs, row by row, on a probe batch (-1 when
    they cannot be compared: a graph onnxruntime cannot run, other shapes, padding that leaks)."""
    try:
        x, y = _probe_outputs(a), _probe_outputs(b)
    except Exception:  # noqa: BLE001 - a graph onnxruntime cannot run is not the same model
        return -1.0
    if x.shape != y.shape:
        return -1.0
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    live = nx > 0
    if not np.all(ny[~live] == 0):
        return -1.0
    cos = (x[live] * y[live]).sum(1) / np.maximum(nx[live] * ny[live], 1e-30)
    return float(cos.min()) if len(cos) else 1.0


def _same_outputs(a: Any, b: Any) -> bool:
    return _min_cosine(a, b) > 0.9999


# -- 6. pooling ------------------------------------------------------------------------------------


def add_pooling(model: Any, pooling: str) -> None:
    """Pool the hidden states inside the graph (fp32); the graph's output becomes ``[batch, dim]``."""
    from onnx import TensorProto, helper

    g = model.graph
    if len(g.output[0].type.tensor_type.shape.dim) == 2:
        return  # the model pools itself: its [batch, dim] output is used as it is
    hidden = g.output[0].name
    mask = "attention_mask"
    if mask not in {i.name for i in g.input} and pooling != "cls":
        raise ModelError(f"{pooling} pooling in the GPU graph needs an attention_mask input")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    nodes: list[Any] = []
    inits = [helper.make_tensor("vecpipe_pool_axis1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("vecpipe_pool_axis2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("vecpipe_pool_zero", TensorProto.INT64, [], [0]),
             helper.make_tensor("vecpipe_pool_eps", TensorProto.FLOAT, [], [1e-9]),
             helper.make_tensor("vecpipe_pool_low", TensorProto.FLOAT, [], [-1e9])]

    def reduce(op: str, x: str, out: str, keepdims: int) -> Any:
        if opset >= 18 or (op == "ReduceSum" and opset >= 13):
            return helper.make_node(op, [x, "vecpipe_pool_axis1"], [out], keepdims=keepdims)
        return helper.make_node(op, [x], [out], axes=[1], keepdims=keepdims)

    if pooling == "cls":
        nodes.append(helper.make_node("Gather", [hidden, "vecpipe_pool_zero"], [OUTPUT], axis=1))
    else:
        nodes += [helper.make_node("Cast", [mask], ["vecpipe_pool_m"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["vecpipe_pool_m", "vecpipe_pool_axis2"], ["vecpipe_pool_m3"])
                  if opset >= 13 else helper.make_node("Unsqueeze", ["vecpipe_pool_m"], ["vecpipe_pool_m3"], axes=[2])]
        if pooling == "mean":
            nodes += [helper.make_node("Mul", [hidden, "vecpipe_pool_m3"], ["vecpipe_pool_x"]),
                      reduce("ReduceSum", "vecpipe_pool_x", "vecpipe_pool_sum", 0),
                      reduce("ReduceSum", "vecpipe_pool_m", "vecpipe_pool_n", 1),
                      helper.make_node("Max", ["vecpipe_pool_n", "vecpipe_pool_eps"], ["vecpipe_pool_d"]),
                      helper.make_node("Div", ["vecpipe_pool_sum", "vecpipe_pool_d"], [OUTPUT])]
        elif pooling == "max":
            nodes += [helper.make_node("Cast", ["vecpipe_pool_m3"], ["vecpipe_pool_b"], to=TensorProto.BOOL),
                      helper.make_node("Where", ["vecpipe_pool_b", hidden, "vecpipe_pool_low"], ["vecpipe_pool_x"]),
                      reduce("ReduceMax", "vecpipe_pool_x", OUTPUT, 0)]
        else:
            raise ModelError(f"pooling {pooling!r} is not known to the GPU graph builder")
    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    g.initializer.extend(t for t in inits if t.name in used)
    out = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, None)
    del g.output[:]
    g.output.append(out)
