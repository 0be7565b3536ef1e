"""A small ONNX graph rewrite done on the protobuf wire format (no ``onnx`` package needed).

PyTorch's ONNX export of ``scaled_dot_product_attention`` guards every attention softmax with
``Where(IsNaN(p), 0, p)``, for rows whose keys are all masked. vecpipe never feeds such a row (every
sequence has its [CLS] token, and the mask adds the float minimum rather than -inf), so the guard is
the identity here; yet on CPU the two elementwise ops over ``[batch, heads, seq, seq]`` cost about a
fifth of the model's time. :func:`strip_softmax_nan_guards` removes them and returns the new model
bytes (or None when the pattern is absent), leaving everything else byte for byte as it was.

Wire format used (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.input = 1, .output = 2,
.op_type = 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_MODEL_GRAPH = 7
_GRAPH_NODE = 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_DOMAIN = 1, 2, 4, 7


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass
class _Field:
    number: int
    wire: int
    raw: memoryview  # the whole field, key included
    value: memoryview | None  # payload of a length-delimited field


def _fields(buf: memoryview) -> list[_Field]:
    out: list[_Field] = []
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value = None
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        out.append(_Field(number, wire, buf[start:pos], value))
    return out


def _ld(number: int, payload: bytes) -> bytes:
    return _enc_varint((number << 3) | 2) + _enc_varint(len(payload)) + payload


@dataclass
class _Node:
    raw: memoryview
    fields: list[_Field]
    op_type: str = ""
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _node(f: _Field) -> _Node:
    assert f.value is not None
    fs = _fields(f.value)
    n = _Node(raw=f.raw, fields=fs)
    for g in fs:
        if g.wire != 2 or g.value is None:
            continue
        if g.number == _NODE_INPUT:
            n.inputs.append(bytes(g.value).decode())
        elif g.number == _NODE_OUTPUT:
            n.outputs.append(bytes(g.value).decode())
        elif g.number == _NODE_OP_TYPE:
            n.op_type = bytes(g.value).decode()
        elif g.number == _NODE_DOMAIN:
            n.domain = bytes(g.value).decode()
    return n


def strip_softmax_nan_guards(model_bytes: bytes) -> bytes | None:
    """Remove ``Where(IsNaN(Softmax(x)), 0, Softmax(x))``; None if there is none to remove."""
    buf = memoryview(model_bytes)
    top = _fields(buf)
    graphs = [f for f in top if f.number == _MODEL_GRAPH and f.wire == 2]
    if len(graphs) != 1:
        return None
    gfields = _fields(graphs[0].value)  # type: ignore[arg-type]
    nodes: dict[int, _Node] = {}
    producer: dict[str, _Node] = {}
    consumers: dict[str, int] = {}
    n: _Node | None  # below, also nodes.get(i)
    for i, f in enumerate(gfields):
        if f.number == _GRAPH_NODE and f.wire == 2:
            n = _node(f)
            nodes[i] = n
            for o in n.outputs:
                producer[o] = n
            for x in n.inputs:
                consumers[x] = consumers.get(x, 0) + 1

    rename: dict[str, str] = {}
    drop: set[int] = set()
    for n in nodes.values():
        if n.op_type != "Where" or n.domain not in ("", "ai.onnx") or len(n.inputs) != 3:
            continue
        cond, _zero, x = n.inputs
        isnan = producer.get(cond)
        sm = producer.get(x)
        if (
            isnan is None
            or isnan.op_type != "IsNaN"
            or isnan.inputs != [x]
            or consumers.get(cond) != 1
            or sm is None
            or sm.op_type != "Softmax"
            or len(n.outputs) != 1
        ):
            continue
        rename[n.outputs[0]] = x
        drop.add(id(n))
        drop.add(id(isnan))
    if not rename:
        return None
    graph_outputs = set()
    for f in gfields:  # GraphProto.output = 12 (ValueInfoProto, name = 1)
        if f.number == 12 and f.value is not None:
            for g in _fields(f.value):
                if g.number == 1 and g.value is not None:
                    graph_outputs.add(bytes(g.value).decode())
    if graph_outputs & set(rename):
        return None

    parts: list[bytes | memoryview] = []
    for i, f in enumerate(gfields):
        n = nodes.get(i)
        if n is None:
            parts.append(f.raw)
            continue
        if id(n) in drop:
            continue
        if not any(x in rename for x in n.inputs):
            parts.append(f.raw)
            continue
        body: list[bytes | memoryview] = []
        for g in n.fields:
            if g.number == _NODE_INPUT and g.wire == 2 and g.value is not None:
                name = bytes(g.value).decode()
                if name in rename:
                    body.append(_ld(_NODE_INPUT, rename[name].encode()))
                    continue
            body.append(g.raw)
        parts.append(_ld(_GRAPH_NODE, b"".join(body)))
    graph_bytes = b"".join(parts)

    out: list[bytes | memoryview] = []
    for f in top:
        out.append(_ld(_MODEL_GRAPH, graph_bytes) if f is graphs[0] else f.raw)
    return b"".join(out)
