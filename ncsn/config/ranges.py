"""The value rules of a typed ``Config``: ranges, allowed combinations, dataset/architecture fits."""

from __future__ import annotations

import math
from typing import Any

from ncsn.config.errors import ConfigError
from ncsn.config.sections import Config


def check_ranges(cfg: Config, source: str) -> None:
    def fail(key: str, value: Any, allowed: str) -> None:
        raise ConfigError(f"{source}: '{key}' = {value!r} is invalid; {allowed}.")

    m, t, s, i, d = cfg.model, cfg.train, cfg.sample, cfg.inpaint, cfg.data
    if not (isinstance(m.sigma_end, float) and m.sigma_end > 0 and math.isfinite(m.sigma_end)):
        fail("model.sigma_end", m.sigma_end, "it must be > 0 and finite")
    if m.sigma_begin != "auto" and not (m.sigma_begin > m.sigma_end and math.isfinite(m.sigma_begin)):
        fail("model.sigma_begin", m.sigma_begin, f"it must be > model.sigma_end ({m.sigma_end}) or 'auto'")
    if m.num_levels != "auto" and m.num_levels < 1:
        fail("model.num_levels", m.num_levels, "it must be >= 1 or 'auto'")
    if m.ngf < 1:
        fail("model.ngf", m.ngf, "it must be >= 1")
    for key, value in (
        ("train.n_iters", t.n_iters), ("train.batch_size", t.batch_size), ("train.snapshot_freq", t.snapshot_freq),
        ("train.val_freq", t.val_freq), ("train.val_size", t.val_size), ("train.log_freq", t.log_freq),
        ("sample.n_samples", s.n_samples), ("sample.batch_size", s.batch_size),
        ("sample.n_steps_each", s.n_steps_each), ("inpaint.n_images", i.n_images),
        ("inpaint.n_steps_each", i.n_steps_each), ("classifier.n_iters", cfg.classifier.n_iters),
        ("classifier.batch_size", cfg.classifier.batch_size), ("data.n_test", d.n_test),
        ("evaluate.select_samples", cfg.evaluate.select_samples),
        ("evaluate.select_steps_each", cfg.evaluate.select_steps_each), ("evaluate.nn_grid", cfg.evaluate.nn_grid),
        ("sample.trajectory_samples", s.trajectory_samples), ("data.gmm_samples", d.gmm_samples),
    ):
        if value < 1:
            fail(key, value, "it must be >= 1")
    for key, value in (("train.lr", t.lr), ("classifier.lr", cfg.classifier.lr)):
        if not (value > 0 and math.isfinite(value)):
            fail(key, value, "it must be > 0")
    for key, value in (("sample.eps", s.eps), ("inpaint.eps", i.eps)):
        if value != "auto" and not (value > 0 and math.isfinite(value)):
            fail(key, value, "it must be > 0 or 'auto' (NCSNv2 technique 4)")
    for key, sampler in (("sample.convention", s.sampler), ("inpaint.sampler", i.sampler)):
        if sampler == "pc" and s.convention != "paper":
            fail(key, s.convention if key == "sample.convention" else sampler,
                 "sampler 'pc' takes eps in the 'paper' convention (sample.convention)")
    if s.corrector_sigmas is not None:
        band = list(s.corrector_sigmas)
        if len(band) != 2 or not (0 < band[0] < band[1] and math.isfinite(band[1])):
            fail("sample.corrector_sigmas", band, "give [lo, hi] with 0 < lo < hi (e.g. [0.1, 1.0]), or null for"
                 " every level")
        if s.sampler != "pc":
            fail("sample.corrector_sigmas", band, f"it is for sampler 'pc' (sample.sampler is {s.sampler!r});"
                 " set it to null")
    if not 0.0 <= t.beta1 < 1.0:
        fail("train.beta1", t.beta1, "it must be in [0, 1)")
    if not (t.weight_decay >= 0 and math.isfinite(t.weight_decay)):
        fail("train.weight_decay", t.weight_decay, "it must be >= 0")
    if not math.isfinite(t.anneal_power):
        fail("train.anneal_power", t.anneal_power, "it must be a finite number")
    if t.weighting == "edm" and t.anneal_power != 2.0:
        fail("train.anneal_power", t.anneal_power, "train.weighting 'edm' sets the weight itself; leave anneal_power at 2.0")
    if not math.isfinite(t.log_sigma_mean):
        fail("train.log_sigma_mean", t.log_sigma_mean, "it must be a finite number")
    if not (t.log_sigma_std > 0 and math.isfinite(t.log_sigma_std)):
        fail("train.log_sigma_std", t.log_sigma_std, "it must be > 0")
    if not m.mults or any(not (v > 0 and math.isfinite(v)) for v in m.mults):
        fail("model.mults", list(m.mults), "give one width multiple > 0 per resolution, e.g. [0.5, 1, 2]")
    if m.precond == "edm" and m.arch != "unet":
        fail("model.precond", m.precond, f"only arch 'unet' takes 'edm' (arch is {m.arch!r}); use 'ncsnv2'")
    if m.precond == "edm" and d.logit_transform:
        fail("model.precond", m.precond, "'edm' assumes images in [0, 1]; set data.logit_transform: false")
    if not 0.0 <= t.ema_rate < 1.0:
        fail("train.ema_rate", t.ema_rate, "it must be in [0, 1)")
    if t.grad_clip is not None and not t.grad_clip > 0:
        fail("train.grad_clip", t.grad_clip, "it must be > 0 or null")
    if cfg.evaluate.kid_subset_size < 2:
        fail("evaluate.kid_subset_size", cfg.evaluate.kid_subset_size, "it must be >= 2")
    if not 0.0 < i.random_fraction < 1.0:
        fail("inpaint.random_fraction", i.random_fraction, "it must be in (0, 1)")
    f = cfg.figures
    for key, value in (("figures.toy_iters", f.toy_iters), ("figures.toy_batch_size", f.toy_batch_size),
                       ("figures.n_chains", f.n_chains), ("figures.n_steps_each", f.n_steps_each),
                       ("figures.image_iters", f.image_iters), ("figures.image_batch_size", f.image_batch_size)):
        if value < 1:
            fail(key, value, "it must be >= 1")
    if not (f.image_noise > 0 and math.isfinite(f.image_noise)):
        fail("figures.image_noise", f.image_noise, "it must be > 0")
    unknown_masks = [k for k in i.masks if k not in ("right_half", "center", "random")]
    if unknown_masks or not i.masks:
        fail("inpaint.masks", list(i.masks), "allowed masks are 'right_half', 'center', 'random'")
    if d.channels is not None and d.channels not in (1, 3):
        fail("data.channels", d.channels, "it must be 1, 3 or null")
    if cfg.base.dataset == "folder" and not d.folder:
        fail("data.folder", d.folder, "dataset 'folder' needs data.folder set to a directory of images")
    if d.image_size is not None:
        if d.image_size < 8:
            fail("data.image_size", d.image_size, "it must be >= 8")
        if m.arch in ("ncsn", "ncsnv2") and d.image_size not in (28, 32, 64):
            fail("data.image_size", d.image_size, "the paper network supports 28, 32 or 64")
        factor = 2 ** (len(m.mults) - 1)
        if m.arch == "unet" and d.image_size % factor:
            fail("data.image_size", d.image_size, f"the unet with {len(m.mults)} resolutions (model.mults) needs a"
                 f" multiple of {factor}")
    if (cfg.base.dataset == "gmm") != (m.arch == "mlp"):
        fail("model.arch", m.arch, "dataset 'gmm' goes with arch 'mlp', image datasets with ncsn, ncsnv2 or unet")
