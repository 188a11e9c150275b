"""Runner plumbing for the head trainers: the official-layout export hook, a DDP wrapper that also runs on
CPU (gloo), and a Runner that can resume under torch >= 2.6."""
from __future__ import annotations

import os
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ..registry import HOOKS, MODEL_WRAPPERS


def unwrap(model):
    """The model inside a DDP (or other mmengine) wrapper."""
    return model.module if is_model_wrapper(model) else model


def save_head_checkpoint(model, path: str, **meta) -> str:
    """Write the head in its official layout: ``model.export_checkpoint(**meta)`` where the model has one
    (Talk2DINO: the bare projection state dict), else ``{'model_state_dict': model.export_state(), **meta}``
    (CLIP-DINOiser's ``last.pt``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    model = unwrap(model)
    if hasattr(model, "export_checkpoint"):
        obj = model.export_checkpoint(**meta)
    else:
        obj = dict(meta, model_state_dict=model.export_state())
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


@HOOKS.register_module("HeadExportHook")
class HeadExportHook(Hook):
    """Writes the trained head in its official checkpoint layout (``work_dir/filename``) after training
    and, with ``interval``, every ``interval`` iterations; ``head=dict(type='dinoiser', checkpoint=...)``
    (or ``type='talk2dino'`` for the Talk2DINO trainer's projection) reads it. Only the main process writes."""

    priority = "VERY_LOW"

    def __init__(self, filename: str = "dinoiser_last.pt", interval: Optional[int] = None) -> None:
        self.filename = filename
        self.interval = interval

    def _export(self, runner) -> None:
        if is_main_process():
            path = save_head_checkpoint(runner.model, os.path.join(runner.work_dir, self.filename),
                                        epoch=runner.epoch, iter=runner.iter)
            runner.logger.info(f"head checkpoint (official layout) written to {path}")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._export(runner)

    def after_train(self, runner) -> None:
        self._export(runner)


@MODEL_WRAPPERS.register_module("DeviceAwareDDP")
class DeviceAwareDDP(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` that drops ``device_ids`` for a CPU module (the Runner always
    passes ``[LOCAL_RANK]``, which torch rejects for CPU modules), so ``torchrun`` training runs on gloo."""

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        param = next(module.parameters(), None)
        if param is None or param.device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


class HeadRunner(Runner):
    """mmengine's ``Runner`` whose checkpoint loading (``resume``, ``load_from``) reads local files with
    ``torch.load(weights_only=False)``: mmengine (0.10.x) calls ``torch.load`` without ``weights_only``,
    which torch >= 2.6 turns into ``True``, and its own checkpoints (message hub: ``HistoryBuffer``, numpy
    arrays) then fail to load. Only for checkpoints you wrote (or trust): unpickling runs code."""

    def load_checkpoint(self, filename: str, map_location="cpu", strict: bool = False,
                        revise_keys=((r"^module.", ""),)):
        if not os.path.isfile(filename):  # URLs and other schemes: mmengine's own loader
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=list(revise_keys))
        checkpoint = torch.load(filename, map_location=map_location, weights_only=False)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        checkpoint = _load_checkpoint_to_model(unwrap(self.model), checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint
