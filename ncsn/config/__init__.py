"""One typed configuration, mirroring the sections of ``params.yaml``.

Every section is a frozen pydantic dataclass with types and rules but no values: the values
live once, in ``ncsn/conf``, which Hydra composes into ``params.yaml``. ``load_config`` reads
``params.yaml`` once at an entry point, validates every key and value, and returns a ``Config``
that is passed explicitly to the code that needs it and logged whole.

Precedence, lowest first: ``ncsn/conf/config.yaml`` < profile < dataset < the pair's file <
sigma policy < ``-S KEY=VALUE`` (so ``dvc exp run -S train.lr=5e-4`` always wins), all of it
Hydra's composition.

* ``sections.py``: the schema, one class per section, and ``Config``; ``fields.py``: its value types;
* ``loading.py``: ``load_config`` and ``config_from_dict``; ``composition.py``: Hydra;
* ``messages.py``: pydantic's errors as one line; ``rules.py``: the rules across keys;
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
