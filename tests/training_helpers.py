"""Runner helpers shared by the training tests: run a config (optionally stopping after ``n``
iterations, as a killed job would) and read its loss history."""
from __future__ import annotations

import copy
import itertools


class _Interrupt:
    """A hook that stops the training loop after ``n`` iterations, as a killed job would stop."""

    priority = "LOWEST"

    def __init__(self, n):
        self.n = n

    def __getattr__(self, name):  # every other hook point: nothing
        if name.startswith(("before_", "after_")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter >= self.n:
            runner.train_loop.stop_training = True


_RUNS = itertools.count()


def run(cfg, resume=False, stop_after=None):
    """Train ``cfg`` (a dict) with ovdense's ``HeadRunner``; ``stop_after``: stop after that iteration."""
    from mmengine.config import Config

    from ovdense.train import HeadRunner

    cfg = Config(copy.deepcopy(cfg))
    cfg.resume = resume
    # mmengine names a run's message hub by its experiment name, a timestamp by default: two runs
    # started in the same second would share one loss history
    cfg.experiment_name = f"test-{next(_RUNS)}"
    runner = HeadRunner.from_cfg(cfg)
    if stop_after is not None:
        from mmengine.hooks import Hook

        runner.register_hook(type("Interrupt", (_Interrupt, Hook), {})(stop_after), "LOWEST")
    runner.train()
    return runner


def losses(runner):
    """The loss of every iteration the runner logged."""
    return list(runner.message_hub.get_scalar("train/loss").data[0])
