"""The rules that tie keys together: allowed combinations and dataset/architecture fits.

Each key's own type and range are in its type (``ncsn.config.fields``); these run once every
section is valid, when a ``Config`` is built, in the order below. A broken rule raises a
pydantic error of type ``rule`` naming the key, its value and the fix, which
``ncsn.config.messages`` turns into one line.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError

from ncsn.models import CONTINUOUS_ARCHS

if TYPE_CHECKING:
    from ncsn.config.sections import Config


def _fail(key: str, value: Any, allowed: str) -> None:
    raise PydanticCustomError("rule", "'{key}' = {shown} is invalid; {allowed}",
                              {"key": key, "value": value, "shown": repr(value), "allowed": allowed})


def check_rules(cfg: Config) -> None:
    """Refuse the first combination of values that does not go together.

    :raises pydantic_core.PydanticCustomError: of type ``rule``, with ``key``, ``value`` and ``allowed``.
    """
    m, t, s, i, d = cfg.model, cfg.train, cfg.sample, cfg.inpaint, cfg.data
    if m.sigma_begin != "auto" and not (m.sigma_begin > m.sigma_end and math.isfinite(m.sigma_begin)):
        _fail("model.sigma_begin", m.sigma_begin, f"it must be > model.sigma_end ({m.sigma_end}) or 'auto'")
    for key, sampler in (("sample.convention", s.sampler), ("inpaint.sampler", i.sampler)):
        if sampler == "pc" and s.convention != "paper":
            _fail(key, s.convention if key == "sample.convention" else sampler,
                  "sampler 'pc' takes eps in the 'paper' convention (sample.convention)")
    if s.corrector_sigmas is not None and s.sampler != "pc":
        _fail("sample.corrector_sigmas", list(s.corrector_sigmas),
              f"it is for sampler 'pc' (sample.sampler is {s.sampler!r}); set it to null")
    if s.sigma_min is not None and s.sigma_max is not None and not s.sigma_max > s.sigma_min:
        _fail("sample.sigma_max", s.sigma_max, f"it must be > sample.sigma_min ({s.sigma_min}) or null")
    if t.sigma_sampling == "continuous" and m.arch not in CONTINUOUS_ARCHS:
        _fail("train.sigma_sampling", t.sigma_sampling,
              f"model.arch {m.arch!r} takes only its trained levels; use 'levels', or arch"
              f" {' or '.join(repr(a) for a in CONTINUOUS_ARCHS)}")
    if t.weighting == "edm" and t.anneal_power != 2.0:
        _fail("train.anneal_power", t.anneal_power,
              "train.weighting 'edm' sets the weight itself; leave anneal_power at 2.0")
    if m.precond == "edm" and m.arch != "unet":
        _fail("model.precond", m.precond, f"only arch 'unet' takes 'edm' (arch is {m.arch!r}); use 'ncsnv2'")
    if m.precond == "edm" and d.logit_transform:
        _fail("model.precond", m.precond, "'edm' assumes images in [0, 1]; set data.logit_transform: false")
    if cfg.base.dataset == "folder" and not d.folder:
        _fail("data.folder", d.folder, "dataset 'folder' needs data.folder set to a directory of images")
    if d.image_size is not None:
        if m.arch in ("ncsn", "ncsnv2") and d.image_size not in (28, 32, 64):
            _fail("data.image_size", d.image_size, "the paper network supports 28, 32 or 64")
        factor = 2 ** (len(m.mults) - 1)
        if m.arch == "unet" and d.image_size % factor:
            _fail("data.image_size", d.image_size, f"the unet with {len(m.mults)} resolutions (model.mults) needs a"
                  f" multiple of {factor}")
    if (cfg.base.dataset == "gmm") != (m.arch == "mlp"):
        _fail("model.arch", m.arch, "dataset 'gmm' goes with arch 'mlp', image datasets with ncsn, ncsnv2 or unet")
