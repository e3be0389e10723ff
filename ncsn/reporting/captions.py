"""The values behind two captions: the panels of the paper's figure 3 (from ``figures.json``) and
the sampler line of the samples and the trajectory (from the sample stage's ``shards/manifest.json``).

The captions' wording is in ``templates/report.html``; these are the parts that need Python.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

NOT_RECORDED = "the sampler of sample.* (its resolved settings are not recorded: no shards/manifest.json)"
UNREADABLE = "the sampler of sample.* (shards/manifest.json holds no readable sampler entry)"


def fig3_panels(numbers: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(panel title, weight, standard error) of each panel of figure 3."""
    from ncsn.figures.langevin_mixing import PANELS

    panels = numbers.get("panels", {})
    return [(PANELS.get(k, k).replace("\n", " "), v.get("weight"), v.get("stderr"))
            for k, v in (panels.items() if isinstance(panels, dict) else ()) if isinstance(v, dict)]


def sampler_text(spec: dict[str, Any] | None) -> str:
    """One line naming the sampler, its settings and network evaluations per sample, read from the
    ``sampler`` entry of ``shards/manifest.json`` as the sample stage stored it: ``SamplerSpec.describe()``
    of the spec it records."""
    from ncsn.stages.sampler import SamplerSpec

    if spec is None:
        return NOT_RECORDED
    try:
        return SamplerSpec.from_dict(spec).describe()
    except (KeyError, TypeError, ValueError) as err:
        log.warning("cannot read the sampler of shards/manifest.json: %s", err)
        return UNREADABLE
