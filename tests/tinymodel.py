"""A tiny random-weight BERT-shaped ONNX model directory for tests (no download, ~4 MB, <1 s).

    from tinymodel import make_tiny_model   # tiny_model_dir: a ready model directory (fixture, via conftest)

``make_tiny_model(dir)`` writes ``model.onnx`` (inputs input_ids / attention_mask / token_type_ids,
int64 [batch, sequence]; output last_hidden_state float32 [batch, sequence, hidden]: word +
position + type embeddings, LayerNorm, then ``layers`` blocks of masked multi-head self-attention
and a feed-forward net, each with a residual and LayerNorm), a copy of the default model's
``tokenizer.json`` and, on request, ``1_Pooling/config.json``, ``sentence_bert_config.json`` and
``config.json``. The output depends on tokens, positions and the attention mask, as a real BERT's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = ROOT / "vecpipe" / "encode" / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"


def make_tiny_model(
    dir: str | Path,
    hidden: int = 32,
    layers: int = 1,
    heads: int = 2,
    vocab_from: str | Path | None = None,
    pooling: str | None = None,
    seed: int = 0,
    max_seq_length: int | None = None,
    max_positions: int = 512,
    pooled_output: bool = False,
    nan_guard: bool = False,
    logits: int = 0,
) -> Path:
    """Write a tiny model directory and return its path.

    ``pooling``: "mean", "cls" or "max" writes ``1_Pooling/config.json`` accordingly (None: none).
    ``max_seq_length`` writes ``sentence_bert_config.json``. ``pooled_output`` makes the graph end
    in a mean over the sequence, giving a 2-D ``sentence_embedding`` output instead. ``nan_guard``
wraps each softmax in ``Where(IsNaN(p), 0, p)`` as PyTorch's SDPA export does. ``logits`` makes a
cross-encoder: the [CLS] state through a linear layer to ``logits`` outputs per input (1 for one
logit per query-document pair).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out_dir = Path(dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_src = Path(vocab_from) if vocab_from else DEFAULT_TOKENIZER
    shutil.copyfile(tok_src, out_dir / "tokenizer.json")
    vocab = json.loads(tok_src.read_text(encoding="utf-8"))["model"]["vocab"]
    vocab_size = len(vocab)

    assert hidden % heads == 0
    head_dim = hidden // heads
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def w(name: str, *shape: int, scale: float = 0.2) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, value, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=f"n{len(nodes)}_{op}", **attrs))
        return output

    def layer_norm(x: str, prefix: str) -> str:
        g = const(prefix + ".g", np.ones(hidden))
        b = const(prefix + ".b", np.zeros(hidden))
        return node("LayerNormalization", [x, g, b], prefix + ".out", axis=-1, epsilon=1e-12)

    # Embeddings: word + position + token type, then LayerNorm.
    word = node("Gather", [w("word_emb", vocab_size, hidden, scale=1.0), "input_ids"], "word", axis=0)
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq_len = node("Gather", [shape, const("one_i", 1, np.int64)], "seq_len", axis=0)
    positions = node("Range", [const("zero_i", 0, np.int64), seq_len, const("step_i", 1, np.int64)], "positions")
    pos = node("Gather", [w("pos_emb", max_positions, hidden, scale=1.0), positions], "pos", axis=0)
    typ = node("Gather", [w("type_emb", 2, hidden, scale=0.5), "token_type_ids"], "typ", axis=0)
    x = node("Add", [node("Add", [word, pos], "wp"), typ], "emb")
    x = layer_norm(x, "emb_ln")

    # Additive attention mask [B, 1, 1, S]: 0 for real tokens, -10000 for padding.
    maskf = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inv = node("Sub", [const("one_f", 1.0), maskf], "mask_inv")
    bias = node("Mul", [inv, const("neg_big", -10000.0)], "mask_bias2d")
    bias = node("Unsqueeze", [bias, const("ax12", [1, 2], np.int64)], "mask_bias")
    split_shape = const("split_shape", [0, 0, heads, head_dim], np.int64)
    merge_shape = const("merge_shape", [0, 0, hidden], np.int64)
    scale = const("att_scale", 1.0 / np.sqrt(head_dim))

    for i in range(layers):
        p = f"l{i}"

        def proj(name: str, inp: str, p: str = p) -> str:
            mm = node("MatMul", [inp, w(f"{p}.{name}.w", hidden, hidden)], f"{p}.{name}.mm")
            return node("Add", [mm, w(f"{p}.{name}.b", hidden, scale=0.02)], f"{p}.{name}")

        def heads_of(t: str) -> str:
            r = node("Reshape", [t, split_shape], t + ".r")
            return node("Transpose", [r], t + ".t", perm=[0, 2, 1, 3])  # [B, h, S, d]

        q, k, v = (heads_of(proj(n, x)) for n in ("q", "k", "v"))
        kt = node("Transpose", [k], f"{p}.kt", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, kt], f"{p}.qk"), scale], f"{p}.scores")
        scores = node("Add", [scores, bias], f"{p}.scores_masked")
        probs = node("Softmax", [scores], f"{p}.probs", axis=-1)
        if nan_guard:
            isnan = node("IsNaN", [probs], f"{p}.isnan")
            probs = node("Where", [isnan, const(f"{p}.zero", 0.0), probs], f"{p}.probs_guarded")
        ctx = node("MatMul", [probs, v], f"{p}.ctx")
        ctx = node("Transpose", [ctx], f"{p}.ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"{p}.ctx_m")
        att = proj("o", ctx)
        x = layer_norm(node("Add", [x, att], f"{p}.res1"), f"{p}.ln1")
        ff = node("MatMul", [x, w(f"{p}.ff1.w", hidden, 2 * hidden)], f"{p}.ff1")
        ff = node("Tanh", [ff], f"{p}.act")
        ff = node("MatMul", [ff, w(f"{p}.ff2.w", 2 * hidden, hidden)], f"{p}.ff2")
        x = layer_norm(node("Add", [x, ff], f"{p}.res2"), f"{p}.ln2")

    int_in = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
    inputs = [int_in("input_ids"), int_in("attention_mask"), int_in("token_type_ids")]
    if logits:  # a cross-encoder: the [CLS] state through a linear layer, ``logits`` values per input
        cls = node("Gather", [x, const("cls_index", 0, np.int64)], "cls", axis=1)
        node("MatMul", [cls, w("classifier.w", hidden, logits)], "logits")
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", logits])]
    elif pooled_output:
        node("ReduceMean", [x], "sentence_embedding", axes=[1], keepdims=0)
        outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])]
    else:
        node("Identity", [x], "last_hidden_state")
        outputs = [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
        ]
    graph = helper.make_graph(nodes, "tiny_bert", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vecpipe-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out_dir / "model.onnx"))

    (out_dir / "config.json").write_text(
        json.dumps({"model_type": "bert", "hidden_size": hidden, "max_position_embeddings": max_positions})
    )
    if pooling is not None:
        flags = {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
        }
        (out_dir / "1_Pooling").mkdir(exist_ok=True)
        (out_dir / "1_Pooling" / "config.json").write_text(json.dumps(flags, indent=2))
    if max_seq_length is not None:
        (out_dir / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
        )
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory (hidden 32, 1 layer, mean pooling, max_seq_length 128). Read-only:
    tests that need another variant call ``make_tiny_model`` themselves."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-bert", pooling="mean",
                           max_seq_length=128)
