"""Captions: the paper's figures 1-3 from the numbers the figures stage wrote (``figures.json``), and
the sampler line of the samples and the trajectory (from the sample stage's ``shards/manifest.json``)."""

from __future__ import annotations

import logging
import math
from typing import Any

from ncsn.reporting.html import esc, fmt, table

log = logging.getLogger(__name__)


def fig1_caption(n: dict[str, Any]) -> str:
    return ("Mean ‖s_θ − ∇ log p‖ inside the 90% highest-density region: "
            f"<b>{fmt(n.get('error_high_density'))}</b>"
            f" (relative {fmt(n.get('relative_error_high_density'))}); outside the 99.9% region: "
            f"<b>{fmt(n.get('error_low_density'))}</b> (relative {fmt(n.get('relative_error_low_density'))}). "
            f"Density-weighted E_p‖error‖ = {fmt(n.get('error_density_weighted'))}, uniform over the grid "
            f"{fmt(n.get('error_uniform_on_grid'))}. Sliced score matching, {fmt(n.get('ssm_iters'))} steps.")


def _percent(value: Any) -> str:
    return f"{100 * value:+.0f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def fig2_caption(n: dict[str, Any]) -> str:
    if "skipped" in n:
        return esc(n["skipped"])
    c, p = n.get("clean", {}), n.get("perturbed", {})
    return (f"{esc(n.get('model', ''))}. Lower bound for perturbed data −D/(2σ²) = "
            f"{fmt(n.get('bound_perturbed'))}. Clean: final loss {fmt(c.get('final'))}, below the bound from step "
            f"{fmt(c.get('first_step_below_bound'))},"
            f" last-quarter drift {_percent(c.get('relative_slope_last_quarter'))} of |loss|. Perturbed (σ = "
            f"{fmt(n.get('noise_std'))}): final {fmt(p.get('final'))}, "
            f"drift {_percent(p.get('relative_slope_last_quarter'))}.")


def fig3_caption(n: dict[str, Any]) -> str:
    from ncsn.figures.langevin_mixing import PANELS

    rows = [(PANELS.get(k, k).replace("\n", " "), v.get("weight"), v.get("stderr"))
            for k, v in n.get("panels", {}).items()]
    return (f"Weight of the (−5, −5) mode (true {fmt(n.get('true_weight'))}); {esc(n.get('sampler', ''))}."
            + table(rows, ("panel", "weight", "std. error")))


def sampler_text(spec: dict[str, Any] | None) -> str:
    """One line naming the sampler, its T, ε and network evaluations per sample, as the sample stage
    resolved them (the ``sampler`` entry of ``shards/manifest.json``)."""
    from ncsn.stages.sampler import SamplerSpec

    if spec is None:
        return "the sampler of sample.* (its resolved settings are not recorded: no shards/manifest.json)"
    try:
        fields = {name: spec[name] for name in SamplerSpec.__dataclass_fields__}
        return SamplerSpec(**fields).describe()
    except (KeyError, TypeError, ValueError) as err:
        log.warning("cannot read the sampler of shards/manifest.json: %s", err)
        return "the sampler of sample.* (shards/manifest.json holds no readable sampler entry)"
