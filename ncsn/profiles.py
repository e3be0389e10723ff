"""Named profiles: the values a ``null`` in ``params.yaml`` resolves to.

* ``smoke``: seconds, for tests and a first look at the pipeline.
* ``cpu``: the default; the whole pipeline in 15-27 minutes on 2 CPU cores (AVX-512 vs AVX2).
* ``paper``: Song & Ermon (2019), Section 5 and Appendix B, for a GPU.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "model": {"arch": "unet", "ngf": 8, "num_levels": 10},
        "train": {"n_iters": 40, "batch_size": 32, "snapshot_freq": 20, "val_freq": 20, "val_size": 64,
                  "log_freq": 10},
        "sample": {"n_samples": 32, "batch_size": 16, "sampler": "pc", "n_steps_each": 2, "eps": "auto",
                   "trajectory_samples": 4},
        "classifier": {"n_iters": 60, "batch_size": 64},
        "evaluate": {"select_samples": 16, "select_steps_each": 1, "kid_subset_size": 16, "nn_grid": 4},
        "inpaint": {"n_images": 4, "n_steps_each": 2, "sampler": "ald", "eps": 2e-5},
        "figures": {"toy_iters": 100, "toy_batch_size": 64, "n_chains": 256, "n_steps_each": 50,
                    "image_iters": 10, "image_batch_size": 8},
    },
    "cpu": {
        "model": {"arch": "unet", "ngf": 32, "num_levels": 10},
        "train": {"n_iters": 3000, "batch_size": 128, "ema": True, "snapshot_freq": 500, "val_freq": 250,
                  "val_size": 500, "log_freq": 25},
        # Predictor-corrector, T = 9 with technique-4 eps: 100 evaluations per sample, and a lower
        # classifier-FID than Algorithm 1 with T = 100 (1,000 evaluations): docs/performance.md.
        "sample": {"n_samples": 1000, "batch_size": 250, "sampler": "pc", "n_steps_each": 9, "eps": "auto",
                   "denoise": True},
        "classifier": {"n_iters": 600, "batch_size": 128},
        "evaluate": {"select_samples": 250, "select_steps_each": 4, "kid_subset_size": 100},
        "inpaint": {"n_images": 8, "n_steps_each": 20, "sampler": "ald", "eps": 2e-5},
        "figures": {"toy_iters": 2000, "toy_batch_size": 256, "n_chains": 1280, "n_steps_each": 100,
                    "image_iters": 300, "image_batch_size": 32},
    },
    "paper": {
        # Paper: Adam lr 1e-3, batch 128, 200k iterations, ngf 128 (64 for MNIST),
        # sigma 1 -> 0.01 over L = 10, eps = 2e-5, T = 100, no EMA, no denoising.
        "model": {"arch": "ncsn", "ngf": 128, "sigma_begin": 1.0, "sigma_end": 0.01, "num_levels": 10},
        "train": {"n_iters": 200000, "batch_size": 128, "lr": 1e-3, "ema": False, "snapshot_freq": 5000,
                  "val_freq": 1000, "val_size": 1000, "log_freq": 100},
        "sample": {"n_samples": 50000, "batch_size": 500, "sampler": "ald", "n_steps_each": 100, "eps": 2e-5,
                   "denoise": False, "use_ema": False},
        "classifier": {"n_iters": 3000, "batch_size": 128},
        "evaluate": {"select_samples": 1000, "select_steps_each": 100, "kid_subset_size": 1000},
        "inpaint": {"n_images": 16, "n_steps_each": 100, "sampler": "ald", "eps": 2e-5},
        # Paper Fig. 3: 10,000 chains, T = 100; Fig. 2 trains on CIFAR-10 (here the prepared data).
        "figures": {"toy_iters": 5000, "toy_batch_size": 512, "n_chains": 10000, "n_steps_each": 100,
                    "image_iters": 2000, "image_batch_size": 128},
    },
}

_MNIST_LIKE = ("mnist5k", "mnist", "fashion_mnist")  # 28×28 grayscale: the paper's MNIST settings


def profile_values(profile: str, dataset: str) -> dict[str, dict[str, Any]]:
    """The profile's values for ``dataset``, section by section."""
    values = {section: dict(keys) for section, keys in PROFILES[profile].items()}
    if dataset == "gmm":
        values["model"] = {**values.get("model", {}), "arch": "mlp", "ngf": 128, "sigma_begin": 20.0,
                           "sigma_end": 1.0}
    elif profile == "paper" and dataset in _MNIST_LIKE:
        values["model"] = {**values["model"], "ngf": 64}
    return values
