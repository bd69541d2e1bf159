"""Training, evaluation and reproduction of the paper's tables.

* :mod:`eghn.train.config` -- TOML configs, ``extends``, ``--set key=value`` overrides;
* :mod:`eghn.train.loader` -- pre-collated, device-resident batching (:class:`GraphBank`);
* :mod:`eghn.train.loop` -- the trainer (:func:`train`) and :func:`evaluate_model`;
* :mod:`eghn.train.checkpoint` -- checkpoints loadable with ``torch.load(weights_only=True)``;
* :mod:`eghn.train.distributed` -- DistributedDataParallel through ``torchrun``;
* :mod:`eghn.train.reproduce` -- ``eghn reproduce table1..table4``;
* :mod:`eghn.train.runs` -- the runs of a reproduction campaign, in worker processes, with stop reasons;
* :mod:`eghn.train.equivariance` -- equivariance of a trained model on a whole split;
* :mod:`eghn.train.trained` -- a trained run as a predictor in the data's own units (:func:`load_run`).
"""

from .config import ConfigError, list_configs, load_config
from .loader import GraphBank
from .loop import evaluate_model, train
from .rundir import RunResult
from .trained import TrainedRun, load_run

__all__ = ["ConfigError", "GraphBank", "RunResult", "TrainedRun", "evaluate_model", "list_configs", "load_config",
           "load_run", "train"]
