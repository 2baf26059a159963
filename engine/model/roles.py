"""One table of parameter roles. Every parameter gets exactly one role when the model is built;
optimizer groups (weight decay, learning-rate multipliers, which optimizer), initialization and
the per-module gradient norms all derive from it (a test checks every parameter has one).

Roles: embedding, position, lm_head, matrix (2-D weights of hidden projections), expert (3-D
expert weights), router, gain (norm weights), bias, scale (λ, α, s_qk... small learned
multipliers), head (heads other than the LM head), adapter (low-rank adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

ROLES = ("embedding", "position", "lm_head", "matrix", "expert", "router", "gain", "bias", "scale", "head", "adapter")
DECAYED = {"embedding", "position", "lm_head", "matrix", "expert", "router", "head", "adapter"}
# names by prefix; everything else by what the module declares (param_roles) or its type
# (a head's parameters are role "head" unless its module declares one; see param_table)
PREFIXES = (("wte.", "embedding"), ("wpe.", "position"), ("lm_head.", "lm_head"))
# the per-module gradient norms logged as debug/grad_norm/<group>
GROUPS = (("wte.", "embeddings"), ("wpe.", "embeddings"), ("blocks.", "blocks"), ("ln_f.", "blocks"),
          ("output_projection.", "output_projection"), ("output_norm.", "output_projection"),
          ("lm_head.", "lm_head"), ("s_z.", "lm_head"))  # a head's parameters: that head's ``group``


@dataclass
class ParamInfo:
    name: str
    param: nn.Parameter
    role: str
    group: str  # for per-module gradient norms

    @property
    def decayed(self) -> bool:
        return self.role in DECAYED and self.param.dim() >= 2


def _by_type(module: nn.Module, pname: str) -> str | None:
    if isinstance(module, nn.Linear):
        return "matrix" if pname == "weight" else "bias"
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        return "gain" if pname == "weight" else "bias"
    if isinstance(module, nn.Embedding):
        return "embedding"
    return None


def param_table(model: nn.Module) -> list[ParamInfo]:
    """Every trainable parameter once (a tied LM head is the embedding), with its role and group."""
    out, seen = [], set()
    heads = getattr(model, "heads", None)
    for mod_name, module in model.named_modules():
        declared = getattr(module, "param_roles", {})
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{pname}" if mod_name else pname
            head = heads[name.split(".")[1]] if heads is not None and name.startswith("heads.") else None
            role = next((r for prefix, r in PREFIXES if name.startswith(prefix)), None)
            role = role or declared.get(pname) or ("head" if head is not None else _by_type(module, pname))
            if role is None and pname.startswith("b_"):
                role = "bias"
            if role not in ROLES:
                raise ValueError(f"parameter {name} has no role; declare it in its module's param_roles")
            group = head.group if head is not None else next((g for prefix, g in GROUPS if name.startswith(prefix)), "other")
            out.append(ParamInfo(name, p, role, group))
    return out
