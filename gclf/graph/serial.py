"""Plain-dict forms of graphs, quantize specs and chains: the one place they are written and read.

Checkpoints store these dicts (``torch.load(weights_only=True)`` reads only plain containers). Format 1
checkpoints (before the graph existed: a ``model_config`` of the CNN-LSTM, chain steps with loose keys and a
spec keyed by layer and site names) are upgraded on reading by :func:`upgrade_checkpoint`; their op names are
the same as the old layer names, so their state dicts load unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, fields

from gclf.errors import GclfError
from gclf.graph.chain import Approx, Compress, Quantize, Step, Train
from gclf.graph.ops import OP_KINDS, Graph, Op
from gclf.graph.spec import OpSpec, QuantConfig, QuantSpec
from gclf.quant.formats import TensorFormat
from gclf.quant.qformat import QFormat

SPEC_VERSION = 2


# ---- graph ---------------------------------------------------------------------------------------------
def op_to_dict(op: Op) -> dict:
    return {"kind": op.kind, **{f.name: getattr(op, f.name) for f in fields(op)}}


def op_from_dict(d: dict) -> Op:
    d = dict(d)
    kind = d.pop("kind")
    if kind not in OP_KINDS:
        raise GclfError(f"unknown op kind {kind!r} in a stored graph (known: {', '.join(OP_KINDS)})")
    return OP_KINDS[kind](**d)


def graph_to_dict(g: Graph) -> dict:
    return {"arch": g.arch, "input_shape": list(g.input_shape), "input_kind": g.input_kind,
            "classes": list(g.classes), "config": dict(g.config), "ops": [op_to_dict(op) for op in g.ops]}


def graph_from_dict(d: dict) -> Graph:
    return Graph(d["arch"], tuple(d["input_shape"]), tuple(op_from_dict(o) for o in d["ops"]),
                 tuple(d["classes"]), d.get("input_kind", "mfcc"), dict(d.get("config", {})))


# ---- quantize spec -------------------------------------------------------------------------------------
def spec_to_dict(s: QuantSpec) -> dict:
    ops = {name: {"acts": {k: f.to_dict() for k, f in o.acts.items()},
                  "weights": {k: f.to_dict() for k, f in o.weights.items()},
                  "bias": o.bias.to_dict() if o.bias is not None else None} for name, o in s.ops.items()}
    return {"version": SPEC_VERSION, "config": asdict(s.config), "ops": ops, "sigmoid": s.sigmoid,
            "tanh": s.tanh, "acc_bits": s.acc_bits}


def spec_from_dict(d: dict) -> QuantSpec:
    if d.get("version") != SPEC_VERSION:
        return _spec_from_v1(d)
    ops = {name: OpSpec({k: QFormat.from_dict(f) for k, f in o["acts"].items()},
                        {k: TensorFormat.from_dict(f) for k, f in o["weights"].items()},
                        TensorFormat.from_dict(o["bias"]) if o.get("bias") else None)
           for name, o in d["ops"].items()}
    return QuantSpec(QuantConfig(**d["config"]), ops, d.get("sigmoid", "exact"), d.get("tanh", "exact"),
                     d.get("acc_bits"))


_V1_LSTM_SITES = ("gates", "cell", "hidden")


def _spec_from_v1(d: dict) -> QuantSpec:
    """A format-1 spec of the CNN-LSTM: sites input/conv*/gates/cell/hidden/fc*, weights lstm.ih/lstm.hh."""
    cfg = QuantConfig(**{f.name: d[f.name] for f in fields(QuantConfig) if f.name in d})
    ops: dict[str, OpSpec] = {}

    def op(name: str) -> OpSpec:
        return ops.setdefault(name, OpSpec())

    for site, f in d.get("acts", {}).items():
        fmt = QFormat.from_dict(f)
        if site == "input":
            op("norm").acts["out"] = fmt
        elif site in _V1_LSTM_SITES:
            op("lstm").acts[site] = fmt
        else:
            op(site).acts["out"] = fmt
    for name, f in d.get("weights", {}).items():
        owner, _, part = name.partition(".")
        op(owner).weights[part or "weight"] = TensorFormat.from_dict(f)
    for name, f in d.get("biases", {}).items():
        op(name).bias = TensorFormat.from_dict(f)
    return QuantSpec(cfg, ops, d.get("sigmoid", "exact"), d.get("tanh", "exact"), d.get("acc_bits"))


# ---- chain ---------------------------------------------------------------------------------------------
def step_to_dict(s: Step) -> dict:
    if isinstance(s, Train):
        return {"step": "train", "config": dict(s.config), "epochs_run": s.epochs_run}
    if isinstance(s, Compress):
        return {"step": "compress", "block": s.block, "targets": list(s.targets), "finetune_epochs": s.finetune_epochs}
    if isinstance(s, Approx):
        return {"step": "approx", "sigmoid": s.sigmoid, "tanh": s.tanh, "finetune_epochs": s.finetune_epochs}
    return {"step": "quantize", "config": asdict(s.config), "qat_epochs": s.qat_epochs, "spec": spec_to_dict(s.spec)}


def step_from_dict(d: dict) -> Step:
    kind = d.get("step")
    if kind == "train":
        if "config" in d:
            return Train(dict(d["config"]), int(d.get("epochs_run", 0)))
        return Train({k: v for k, v in d.items() if k not in ("step", "epochs_run")}, int(d.get("epochs_run", 0)))
    if kind == "compress":
        return Compress(int(d["block"]), tuple(d["targets"]), int(d.get("finetune_epochs", 0)))
    if kind == "approx":
        return Approx(d["sigmoid"], d["tanh"], int(d.get("finetune_epochs", 0)))
    if kind == "quantize":
        spec = spec_from_dict(d["spec"])
        return Quantize(spec.config, spec, int(d.get("qat_epochs", 0)))
    raise GclfError(f"unknown chain step {kind!r}: known steps are train, compress, approx, quantize")


def chain_to_dicts(chain: list[Step]) -> list[dict]:
    return [step_to_dict(s) for s in chain]


def chain_from_dicts(dicts: list[dict]) -> list[Step]:
    return [step_from_dict(d) for d in dicts]


# ---- checkpoints ---------------------------------------------------------------------------------------
def upgrade_checkpoint(ck: dict, where: str = "checkpoint") -> dict:
    """A format-1 checkpoint dict as format 2 (graph + typed-serialised chain); format 2 is returned as is."""
    if ck.get("gclf") == 2:
        return ck
    if ck.get("gclf") != 1 or "model_config" not in ck:
        raise GclfError(f"{where}: not a gclf checkpoint of a known format (1 or 2)")
    from gclf.graph.models.cnn_lstm import CnnLstmConfig, build

    try:
        graph = build(CnnLstmConfig.from_dict(ck["model_config"]))
        chain = chain_from_dicts(ck.get("chain", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise GclfError(f"{where}: a format-1 checkpoint this version cannot read ({exc}); "
                        "rerun `gclf train` and the steps after it") from None
    out = {k: v for k, v in ck.items() if k != "model_config"}
    out.update({"gclf": 2, "graph": graph_to_dict(graph), "chain": chain_to_dicts(chain)})
    return out
