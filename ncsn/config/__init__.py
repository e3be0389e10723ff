"""One typed configuration, mirroring the sections of ``params.yaml``.

Every section is a frozen dataclass. ``load_config`` reads ``params.yaml`` once at
an entry point, fills each ``null`` value from the selected profile
(``ncsn.profiles``), validates every key and value, and returns a ``Config`` that
is passed explicitly to the code that needs it and logged whole.

Precedence, lowest first: dataclass default < profile value < explicit value in
``params.yaml`` (so ``dvc exp run -S train.lr=5e-4`` always wins).

* ``sections.py``: the dataclasses, one per section, and ``Config``;
* ``loading.py``: ``load_config`` and ``config_from_dict``;
* ``coercion.py``: unknown keys and wrong types; ``ranges.py``: values out of range;
* ``errors.py``: ``ConfigError``, the one-line user error.
"""

from ncsn.config.errors import ConfigError
from ncsn.config.loading import config_from_dict, load_config
from ncsn.config.sections import (ARCHS, DATASETS, SECTIONS, BaseConfig, ClassifierConfig, Config, DataConfig,
                                  EvaluateConfig, FiguresConfig, InpaintConfig, ModelConfig, PathsConfig,
                                  SampleConfig, TrackingConfig, TrainConfig)

__all__ = ["ARCHS", "DATASETS", "SECTIONS", "BaseConfig", "ClassifierConfig", "Config", "ConfigError", "DataConfig",
           "EvaluateConfig", "FiguresConfig", "InpaintConfig", "ModelConfig", "PathsConfig", "SampleConfig",
           "TrackingConfig", "TrainConfig", "config_from_dict", "load_config"]
