"""Cut a model in two: ``head`` runs on the device, ``tail`` on the edge server.

``partition(model, at)`` returns ``(head, tail)`` with ``tail(head(x))`` equal to ``model(x)``
bit for bit (same operations, same order, same weights: the two halves share the model's
parameters, nothing is copied).

Supported families:

* torchvision CNNs (and any ``nn.Module`` that ``torch.fx`` traces): ``at`` is a module name
  (``"features.6"``, ``"layer2"``; the cut lies after that module's output) or an fx node
  name (``"add_3"``). The cut must be a single tensor crossing: no earlier value (a skip
  connection) may be used after it.
* ``nn.Sequential``: ``at`` is an index or a child name (fallback when tracing fails).
* Hugging Face ``ViTModel`` / ``ViTForImageClassification`` and BLIP's vision model
  (``BlipVisionModel``): ``at`` is a block index ``k`` in ``0 .. num_layers``; the head runs
  the patch + position embeddings (with the CLS token) and blocks ``0 .. k-1``, the tail the
  remaining blocks, the final layer norm and the pooler / classifier. The crossing tensor is
  the token map ``[N, 1 + patches, hidden]``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from taskcodec.errors import ArgumentTypeError, SplitError

__all__ = ["partition", "cut_points", "SplitError"]


Cut = Union[str, int]


# ---------------------------------------------------------------------------- transformers
def _vit_parts(model: nn.Module) -> Optional[Tuple[str, nn.Module]]:
    """(family, backbone) for the Hugging Face vision transformers we know, else None."""
    name = type(model).__name__
    if name == "ViTForImageClassification":
        return "vit_cls", model.vit
    if name == "ViTModel":
        return "vit", model
    if name == "BlipVisionModel":
        return "blip_vision", model
    return None


def _blocks(backbone: nn.Module) -> nn.ModuleList:
    if hasattr(backbone, "layers") and isinstance(backbone.layers, nn.ModuleList):
        return backbone.layers  # transformers >= 5 (ViT)
    enc = getattr(backbone, "encoder", None)
    for attr in ("layers", "layer"):
        blocks = getattr(enc, attr, None)
        if isinstance(blocks, nn.ModuleList):
            return blocks
    raise SplitError(f"cannot find the transformer blocks of {type(backbone).__name__}")


def _run_block(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    out = block(h)
    return out[0] if isinstance(out, (tuple, list)) else out


class _VitHead(nn.Module):
    def __init__(self, backbone: nn.Module, k: int) -> None:
        super().__init__()
        self.embeddings = backbone.embeddings
        self.blocks = nn.ModuleList(list(_blocks(backbone))[:k])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pe = getattr(self.embeddings, "patch_embeddings", None)  # ViT casts the pixels first
        if pe is not None:
            pixel_values = pixel_values.to(pe.projection.weight.dtype)
        h = self.embeddings(pixel_values)
        for block in self.blocks:
            h = _run_block(block, h)
        return h


class _VitTail(nn.Module):
    def __init__(self, model: nn.Module, family: str, backbone: nn.Module, k: int) -> None:
        super().__init__()
        self.family = family
        self.blocks = nn.ModuleList(list(_blocks(backbone))[k:])
        if family == "blip_vision":
            self.norm = backbone.post_layernorm
            self.pooler = None
            self.classifier = None
        else:
            self.norm = backbone.layernorm
            self.pooler = getattr(backbone, "pooler", None)
            self.classifier = model.classifier if family == "vit_cls" else None

    def forward(self, h: torch.Tensor) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

        for block in self.blocks:
            h = _run_block(block, h)
        seq = self.norm(h)
        if self.family == "blip_vision":
            return BaseModelOutputWithPooling(last_hidden_state=seq, pooler_output=self.norm(seq[:, 0, :]))
        if self.family == "vit_cls":
            return ImageClassifierOutput(logits=self.classifier(seq[:, 0, :]))
        pooled = self.pooler(seq) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=seq, pooler_output=pooled)


def _partition_vit(model: nn.Module, family: str, backbone: nn.Module, at: Cut) -> Tuple[nn.Module, nn.Module]:
    n = len(_blocks(backbone))
    if isinstance(at, str):
        try:
            at = int(at.rsplit(".", 1)[-1])
        except ValueError:
            raise SplitError(f"{type(model).__name__} is cut by block index 0..{n}, got {at!r}") from None
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= n:
        raise SplitError(f"{type(model).__name__} has {n} blocks: cut at an index in 0..{n}, got {at!r}")
    head = _VitHead(backbone, at).train(model.training)
    return head, _VitTail(model, family, backbone, at).train(model.training)


# ---------------------------------------------------------------------------- torch.fx
class _Tracer(torch.fx.Tracer):
    def __init__(self, leaf: Optional[str] = None) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.leaf or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, leaf: Optional[str]) -> torch.fx.GraphModule:
    tracer = _Tracer(leaf)
    graph = tracer.trace(model)
    return torch.fx.GraphModule(tracer.root, graph, type(model).__name__)


def _find_node(gm: torch.fx.GraphModule, at: str) -> Optional[torch.fx.Node]:
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target == at:
            return node
    for node in gm.graph.nodes:
        if node.name == at and node.op not in ("placeholder", "output"):
            return node
    return None


def _split_graph(gm: torch.fx.GraphModule, cut: torch.fx.Node, at: str) -> Tuple[nn.Module, nn.Module]:
    nodes: List[torch.fx.Node] = list(gm.graph.nodes)
    pos = nodes.index(cut)
    before, after = nodes[: pos + 1], nodes[pos + 1 :]
    after_set = set(after)
    placeholders = [n for n in before if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise SplitError(f"the model takes {len(placeholders)} inputs; partition supports one")
    for n in before:
        if n is cut:
            continue
        late = [u.name for u in n.users if u in after_set]
        if late:
            raise SplitError(
                f"cannot cut at {at!r}: {n.name!r} (computed before the cut) is also used after it "
                f"by {late}; pick a cut where a single tensor crosses (e.g. a block boundary)"
            )
    if not any(u in after_set for u in cut.users):
        raise SplitError(f"cannot cut at {at!r}: nothing after it uses its output")

    head_g = torch.fx.Graph()
    env: Dict[torch.fx.Node, torch.fx.Node] = {}
    for n in before:
        env[n] = head_g.node_copy(n, lambda x: env[x])
    head_g.output(env[cut])

    tail_g = torch.fx.Graph()
    env2: Dict[torch.fx.Node, torch.fx.Node] = {cut: tail_g.placeholder("features")}
    for n in after:
        env2[n] = tail_g.node_copy(n, lambda x: env2[x])
    head = torch.fx.GraphModule(gm, head_g, "Head")
    tail = torch.fx.GraphModule(gm, tail_g, "Tail")
    head.graph.eliminate_dead_code()
    tail.graph.eliminate_dead_code()
    head.recompile()
    tail.recompile()
    return head.train(gm.training), tail.train(gm.training)


def _partition_sequential(model: nn.Sequential, at: Cut) -> Tuple[nn.Module, nn.Module]:
    names = [name for name, _ in model.named_children()]
    if isinstance(at, int) and not isinstance(at, bool):
        i = at if at >= 0 else len(names) + at
    elif at in names:
        i = names.index(at)
    else:
        raise SplitError(f"{at!r} is not a child of this Sequential (children: {names})")
    if not 0 <= i < len(names) - 1:
        raise SplitError(f"cut after child 0..{len(names) - 2}, got {at!r}")
    return model[: i + 1], model[i + 1 :]


def partition(model: nn.Module, at: Cut) -> Tuple[nn.Module, nn.Module]:
    """Split ``model`` after ``at`` into ``(head, tail)`` with ``tail(head(x)) == model(x)``.

    Args:
        model: a torchvision CNN (any ``torch.fx``-traceable module), an ``nn.Sequential``, or a
            Hugging Face ``ViTModel`` / ``ViTForImageClassification`` / ``BlipVisionModel``.
        at: CNNs: a module name (cut after that module, e.g. ``"features.6"``) or an fx node
            name; ``nn.Sequential``: also a child index; transformers: a block index ``k``
            (the head runs the embeddings and blocks ``0..k-1``).

    Returns:
        ``(head, tail)`` modules sharing ``model``'s parameters (and its train/eval mode).
        For the transformers, ``tail`` returns the same output class as ``model``
        (``logits`` for the classifier, ``last_hidden_state`` / ``pooler_output`` otherwise).

    Raises:
        SplitError: unknown cut, or a cut that a skip connection crosses.
        ArgumentTypeError: ``model`` is not an ``nn.Module``, or ``at`` neither a str nor an int.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    vit = _vit_parts(model)
    if vit is not None:
        return _partition_vit(model, vit[0], vit[1], at)
    if isinstance(at, int) and not isinstance(at, bool):
        if isinstance(model, nn.Sequential):
            return _partition_sequential(model, at)
        raise SplitError(f"cut a {type(model).__name__} by module or node name, got the index {at}")
    if not isinstance(at, str):
        raise ArgumentTypeError(f"at must be a module/node name (str) or an index (int), got "
                                f"{type(at).__name__} {at!r}")
    modules = dict(model.named_modules())
    try:
        gm = _trace(model, at if at in modules else None)
    except Exception as e:  # tracing fails on data-dependent control flow
        if isinstance(model, nn.Sequential):
            return _partition_sequential(model, at)
        raise SplitError(
            f"torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: {e}); "
            f"wrap the model as an nn.Sequential to cut it"
        ) from e
    node = _find_node(gm, at)
    if node is None:
        raise SplitError(
            f"{at!r} is neither a module of {type(model).__name__} nor a node of its traced graph; "
            f"see taskcodec.split.cut_points(model)"
        )
    return _split_graph(gm, node, at)


def cut_points(model: nn.Module) -> List[Cut]:
    """Candidate cuts: block indices for the transformers, else the top-level block names
    (children of a CNN's ``features`` / ``layerN`` stages) where a single tensor crosses."""
    vit = _vit_parts(model)
    if vit is not None:
        return list(range(len(_blocks(vit[1])) + 1))
    names: List[Cut] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            names += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            names.append(name)
    good: List[Cut] = []
    for name in names:
        try:
            partition(model, name)
        except SplitError:
            continue
        good.append(name)
    return good
