"""ncsn: Noise Conditional Score Networks (Song & Ermon, 2019) as a library and a reproducible pipeline.

The public API (``ncsn.api``)::

    import ncsn
    model = ncsn.load("outputs/train/model.pt")   # or "models:/ncsn-mnist5k@champion"
    x = model.sample(16, seed=0)
    ncsn.samplers.heun(model.denoise, x0, ncsn.samplers.karras_sigmas(18, 0.01, 5.0))   # any sampler, by hand

The layers, lowest first: ``core`` (the paper's maths, torch only), ``models`` (networks),
``data``, ``config``, ``storage`` (files on disk), ``stages`` (one per ``dvc.yaml`` stage),
``evaluation``, ``figures``, ``tracking`` (MLflow) and ``reporting`` (HTML pages).
Importing ``ncsn`` loads none of them; ``ncsn.load`` and ``ncsn.Model`` load the API on first use,
``ncsn.samplers`` the samplers (``ncsn.core.sampling``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Model", "load", "samplers"]


def __getattr__(name: str) -> Any:
    if name == "samplers":
        import importlib

        return importlib.import_module("ncsn.samplers")
    if name in __all__:
        from ncsn import api

        return getattr(api, name)
    raise AttributeError(f"module 'ncsn' has no attribute {name!r}")
