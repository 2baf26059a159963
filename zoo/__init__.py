"""The model zoo: one folder per kind, grouped by family (``attention``, ``ffn``, ``block``).

    zoo/<family>/<kind>/spec.py     the torch-free spec: keys, checks, parameter/FLOP/cache counts,
                                    LoRA targets, whether it can grow, its rows in bench modules
    zoo/<family>/<kind>/module.py   the torch module that builds from the spec (``@builds(Spec)``)

A spec registers itself (``@register``) and is found by ``zoo.registry`` when its folder is
there, so a new kind is a new folder (plus its tests). The specs are imported by the torch-free
``runspec`` (config checks, sizes, sweeps), the modules only by the engine; import-linter
contracts in pyproject.toml keep torch out of every ``spec.py``. ``zoo/nn`` holds the torch
pieces the kinds share (projections, norms, positions, the loss/metric collector).
"""
