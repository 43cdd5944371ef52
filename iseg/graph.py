"""The I-Segmenter graph as one ordered list of integer ops (``spec/numerics.md`` §6).

This is the IR every back end shares: the numpy reference executes it (``iseg.reference``),
the planner of ``gen-hls`` tiles and schedules it, the trace names of the C-simulation are its
op names. Ops hold activation names, shapes, and the *names* of their weights and constants in
the checkpoint; values are looked up there, so the graph is cheap and printable.

Activation dtypes: ``i8``/``i16``/``u8`` for stored activations (``i16`` also for the residual
stream); attention probabilities never leave the attention op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iseg.checkpoint import ModelSpec


@dataclass(frozen=True)
class Act:
    """A stored activation: name, (rows, cols) shape, integer width."""

    name: str
    shape: tuple[int, ...]
    bits: int  # 8 or 16 signed, or 8 unsigned for labels
    signed: bool = True

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * (self.bits // 8)


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class PatchEmbed(Op):
    """u8 RGB image -> (N, D) i16: RQ_16(x_patch @ W + b), x = u - 128, k = (py*P + px)*3 + c."""

    patch: int = 0
    grid: tuple[int, int] = (0, 0)
    dim: int = 0
    weight: str = ""
    bias: str = ""
    rq: str = ""


@dataclass(frozen=True)
class Embed(Op):
    """[cls ; tok] (+) pos -> (N+1, D) i16."""

    cls: str = ""
    pos: str = ""
    add: str = ""


@dataclass(frozen=True)
class LayerNorm(Op):
    """I-LayerNorm over the last axis -> RQ_bits with per-channel gamma/beta."""

    rq: str = ""
    bits: int = 8


@dataclass(frozen=True)
class Linear(Op):
    """RQ_bits(x @ W + b): x (T, K) i8, W (K, N) i8, per-channel requant."""

    rows: int = 0
    k: int = 0
    n: int = 0
    weight: str = ""
    bias: str | None = None
    rq: str = ""
    bits: int = 8


@dataclass(frozen=True)
class Gelu(Op):
    """RQ_8(λ-ShiftGELU(x)) (or ShiftGELU)."""

    consts: str = ""
    rq: str = ""


@dataclass(frozen=True)
class Attention(Op):
    """Multi-head attention core on the fused qkv activation (T, 3D) -> RQ_8(P·V) (T, D).

    Per head h: P = Shiftmax(RQ_8(q_h k_hᵀ)), o_h = P v_h; the heads are concatenated.
    """

    rows: int = 0
    heads: int = 0
    d_head: int = 0
    qk_rq: str = ""
    softmax: str = ""
    variant: str = "precise"
    pv_rq: str = ""


@dataclass(frozen=True)
class Add(Op):
    """Integer residual add (§5.4) of inputs[0] and inputs[1] -> i16."""

    add: str = ""


@dataclass(frozen=True)
class SliceRows(Op):
    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class ConcatConst(Op):
    """Append constant rows (the decoder's class embeddings) after the input rows."""

    const: str = ""


@dataclass(frozen=True)
class MaskProduct(Op):
    """RQ_16(patches @ classesᵀ): (Np, Dd) i8 x (n_cls, Dd) i8 -> (Np, n_cls) i16."""

    rq: str = ""


@dataclass(frozen=True)
class ArgmaxUpsample(Op):
    """argmax over classes on the token grid, then nearest upsampling -> (H, W) u8."""

    grid: tuple[int, int] = (0, 0)
    patch: int = 0


@dataclass
class Graph:
    spec: ModelSpec
    ops: list[Op] = field(default_factory=list)
    acts: dict[str, Act] = field(default_factory=dict)

    def add(self, op: Op, out: Act) -> str:
        if op.name in {o.name for o in self.ops}:
            raise ValueError(f"duplicate op name {op.name}")
        self.ops.append(op)
        self.acts[out.name] = out
        return out.name

    def describe(self) -> str:
        """One line per op: the printable IR."""
        lines = []
        for op in self.ops:
            a = self.acts[op.output]
            lines.append(f"{type(op).__name__:<15} {op.name:<24} {','.join(op.inputs):<30} -> "
                         f"{'i' if a.signed else 'u'}{a.bits} {a.shape}")
        return "\n".join(lines)


def _block(g: Graph, p: str, x: str, rows: int, d: int, heads: int, f: int, spec: ModelSpec) -> str:
    a = g.add(LayerNorm(f"{p}.ln1", (x,), f"{p}.ln1", rq=f"{p}.ln1"), Act(f"{p}.ln1", (rows, d), 8))
    qkv = g.add(Linear(f"{p}.qkv", (a,), f"{p}.qkv", rows=rows, k=d, n=3 * d, weight=f"{p}.qkv.weight",
                       bias=f"{p}.qkv.bias", rq=f"{p}.qkv.rq"), Act(f"{p}.qkv", (rows, 3 * d), 8))
    o = g.add(Attention(f"{p}.attn", (qkv,), f"{p}.attn", rows=rows, heads=heads, d_head=d // heads,
                        qk_rq=f"{p}.attn.qk.rq", softmax=f"{p}.attn.softmax", variant=spec.softmax,
                        pv_rq=f"{p}.attn.pv.rq"), Act(f"{p}.attn", (rows, d), 8))
    o = g.add(Linear(f"{p}.proj", (o,), f"{p}.proj", rows=rows, k=d, n=d, weight=f"{p}.proj.weight",
                     bias=f"{p}.proj.bias", rq=f"{p}.proj.rq", bits=16), Act(f"{p}.proj", (rows, d), 16))
    x = g.add(Add(f"{p}.add1", (x, o), f"{p}.add1", add=f"{p}.add1"), Act(f"{p}.add1", (rows, d), 16))
    h = g.add(LayerNorm(f"{p}.ln2", (x,), f"{p}.ln2", rq=f"{p}.ln2"), Act(f"{p}.ln2", (rows, d), 8))
    h = g.add(Linear(f"{p}.fc1", (h,), f"{p}.fc1", rows=rows, k=d, n=f, weight=f"{p}.fc1.weight",
                     bias=f"{p}.fc1.bias", rq=f"{p}.fc1.rq"), Act(f"{p}.fc1", (rows, f), 8))
    h = g.add(Gelu(f"{p}.gelu", (h,), f"{p}.gelu", consts=f"{p}.gelu", rq=f"{p}.gelu.rq"),
              Act(f"{p}.gelu", (rows, f), 8))
    h = g.add(Linear(f"{p}.fc2", (h,), f"{p}.fc2", rows=rows, k=f, n=d, weight=f"{p}.fc2.weight",
                     bias=f"{p}.fc2.bias", rq=f"{p}.fc2.rq", bits=16), Act(f"{p}.fc2", (rows, d), 16))
    return g.add(Add(f"{p}.add2", (x, h), f"{p}.add2", add=f"{p}.add2"), Act(f"{p}.add2", (rows, d), 16))


def build_graph(spec: ModelSpec) -> Graph:
    """The op list of an I-Segmenter with hyper-parameters ``spec`` (its checkpoint's image size)."""
    g = Graph(spec)
    d, n = spec.dim, spec.n_patches
    h, w = spec.image
    g.acts["image"] = Act("image", (h, w, 3), 8, signed=False)
    x = g.add(PatchEmbed("patch_embed", ("image",), "patch_embed", patch=spec.patch, grid=spec.grid, dim=d,
                         weight="patch_embed.weight", bias="patch_embed.bias", rq="patch_embed.rq"),
              Act("patch_embed", (n, d), 16))
    x = g.add(Embed("embed", (x,), "embed", cls="cls_token", pos="pos_embed", add="embed.add"),
              Act("embed", (n + 1, d), 16))
    for i in range(spec.layers):
        x = _block(g, f"enc.{i}", x, n + 1, d, spec.heads, spec.mlp_dim, spec)
    e = g.add(LayerNorm("enc.norm", (x,), "enc.norm", rq="enc.norm"), Act("enc.norm", (n + 1, d), 8))
    e = g.add(SliceRows("enc.patches", (e,), "enc.patches", start=1, stop=n + 1), Act("enc.patches", (n, d), 8))
    if spec.decoder == "linear":
        m = g.add(Linear("dec.head", (e,), "dec.head", rows=n, k=d, n=spec.n_cls, weight="dec.head.weight",
                         bias="dec.head.bias", rq="dec.head.rq", bits=16), Act("dec.head", (n, spec.n_cls), 16))
    else:
        dd, k = spec.dec_dim, spec.n_cls
        x = g.add(Linear("dec.proj", (e,), "dec.proj", rows=n, k=d, n=dd, weight="dec.proj.weight",
                         bias="dec.proj.bias", rq="dec.proj.rq", bits=16), Act("dec.proj", (n, dd), 16))
        x = g.add(ConcatConst("dec.tokens", (x,), "dec.tokens", const="dec.cls_emb"),
                  Act("dec.tokens", (n + k, dd), 16))
        for j in range(spec.dec_layers):
            x = _block(g, f"dec.{j}", x, n + k, dd, spec.dec_heads, spec.dec_mlp_dim, spec)
        x = g.add(LayerNorm("dec.norm", (x,), "dec.norm", rq="dec.norm"), Act("dec.norm", (n + k, dd), 8))
        pp = g.add(SliceRows("dec.patches", (x,), "dec.patches", start=0, stop=n), Act("dec.patches", (n, dd), 8))
        cc = g.add(SliceRows("dec.classes", (x,), "dec.classes", start=n, stop=n + k),
                   Act("dec.classes", (k, dd), 8))
        pp = g.add(Linear("dec.proj_patch", (pp,), "dec.proj_patch", rows=n, k=dd, n=dd,
                          weight="dec.proj_patch.weight", rq="dec.proj_patch.rq"), Act("dec.proj_patch", (n, dd), 8))
        cc = g.add(Linear("dec.proj_classes", (cc,), "dec.proj_classes", rows=k, k=dd, n=dd,
                          weight="dec.proj_classes.weight", rq="dec.proj_classes.rq"),
                   Act("dec.proj_classes", (k, dd), 8))
        m = g.add(MaskProduct("dec.mask", (pp, cc), "dec.mask", rq="dec.mask.rq"), Act("dec.mask", (n, k), 16))
        m = g.add(LayerNorm("dec.mask_norm", (m,), "dec.mask_norm", rq="dec.mask_norm", bits=16),
                  Act("dec.mask_norm", (n, k), 16))
    g.add(ArgmaxUpsample("labels", (m,), "labels", grid=spec.grid, patch=spec.patch),
          Act("labels", (h, w), 8, signed=False))
    return g
