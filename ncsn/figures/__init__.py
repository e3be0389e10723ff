"""The paper's figures, recomputed at toy scale by the ``figures`` stage.

One module per figure; each exposes ``compute(...) -> results`` (the numbers, saved in
``figures.json``) and ``plot(results, path)`` (the PNG):

* :mod:`ncsn.figures.score_accuracy` -- paper Fig. 1: scores learned by sliced score
  matching on the 2-D mixture are accurate near the modes only.
* :mod:`ncsn.figures.ssm_noise` -- paper Fig. 2: sliced score matching on clean images
  has no minimum; a N(0, 0.01²) perturbation makes it converge.
* :mod:`ncsn.figures.langevin_mixing` -- paper Fig. 3: plain Langevin dynamics gets the
  mixture weights wrong, annealed Langevin recovers 1/5 : 4/5, with exact and learned scores.

Figures 1 and 3 share the 2-D setting and its training loop (:mod:`ncsn.figures.toy_training`);
all three share the file names and plotting helpers of :mod:`ncsn.figures.common`.

Figures 4-6 (sampling trajectory, inpainting, nearest neighbours) are drawn by the
``sample``, ``inpaint`` and ``evaluate`` stages and collected by the report (``ncsn.reporting``).

:mod:`ncsn.figures.sigma_schedule` draws the σ schedule: the train stage's ``sigmas.png``, the
report's noise levels and the comparison page's overlay of several runs.
"""

from ncsn.figures.common import FIGURE_FILES

__all__ = ["FIGURE_FILES"]
