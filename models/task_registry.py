"""Tasks by name: the built-in ones and any registered later (a new task is a task class plus its models).

Kept free of torch so the run config can check a task name without importing any network.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.run_config import RunConfig
    from models.task import Task

TaskFactory = Callable[["RunConfig"], "Task"]

_BUILT_IN = {
    "classification": "models.task:ClassificationTask",
    "segmentation": "models.task:SegmentationTask",
    "end-to-end": "models.task:EndToEndTask",
    "video": "models.video_task:VideoTask",
    "fusion": "models.multimodal_task:MultimodalTask",
    "pathology": "models.multimodal_task:pathology_task",
    "mammography": "models.multimodal_task:mammography_task",
    "mass-segmentation": "models.multimodal_task:MassSegmentationTask",
}
_REGISTERED: dict[str, TaskFactory] = {}


def register_task(name: str, factory: TaskFactory) -> None:
    """Make ``task = <name>`` build its task with ``factory(run_config)``."""
    if name in _BUILT_IN:
        raise ValueError(f"task '{name}' is built in")
    _REGISTERED[name] = factory


def task_names() -> tuple[str, ...]:
    """Every task the run config accepts."""
    return (*_BUILT_IN, *_REGISTERED)


def task_for(cfg: RunConfig) -> Task:
    """The run config's task, with its settings."""
    if cfg.task in _REGISTERED:
        return _REGISTERED[cfg.task](cfg)
    module, _, name = _BUILT_IN[cfg.task].partition(":")
    factory = getattr(importlib.import_module(module), name)
    return factory.from_config(cfg) if hasattr(factory, "from_config") else factory(cfg)
