"""Training, evaluation and reproduction of the paper's tables.

* :mod:`eghn.train.config` -- TOML configs, ``extends``, ``--set key=value`` overrides;
* :mod:`eghn.train.loader` -- pre-collated, device-resident batching (:class:`GraphBank`);
* :mod:`eghn.train.loop` -- the trainer (:func:`train`) and :func:`evaluate_model`;
* :mod:`eghn.train.checkpoint` -- checkpoints loadable with ``torch.load(weights_only=True)``;
* :mod:`eghn.train.distributed` -- DistributedDataParallel through ``torchrun``;
* :mod:`eghn.train.reproduce` -- ``eghn reproduce table1..table4``.
"""

from .config import ConfigError, list_configs, load_config
from .loader import GraphBank
from .loop import RunResult, evaluate_model, train

__all__ = ["ConfigError", "GraphBank", "RunResult", "evaluate_model", "list_configs", "load_config", "train"]
