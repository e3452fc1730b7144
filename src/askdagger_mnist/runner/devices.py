"""The device a training run uses, and how run.json names it (docs/cluster.md).

``cpu``, or with CUDA a GPU placed by ``gpu_slots``: a slot on the least-loaded visible GPU,
held for the run's whole life (under SLURM: the GPU SLURM allocated, as it is).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from ..errors import UserError
from .gpu_slots import gpu_slot


def check_device(choice: str) -> None:
    """Refuse ``--device cuda`` where no GPU is visible (before any work)."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda (config key device) was asked for but no CUDA GPU is "
                        "visible: use cpu or auto, or run where a GPU is visible.")


def set_float32_precision(precision: str) -> None:
    """How torch computes float32 products (config key matmul_precision, docs/spec.md §8):
    ``torch.set_float32_matmul_precision`` for matrix products, and cuDNN's convolutions to
    match. cuDNN computes float32 convolutions in TF32 by default on NVIDIA Ampere and later,
    whatever the matmul precision says; "highest" turns that off, so that it means float32
    throughout on every device; "high" and "medium" leave it on."""
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = precision != "highest"


def uses_cuda(choice: str) -> bool:
    return choice == "cuda" or (choice == "auto" and torch.cuda.is_available())


@contextlib.contextmanager
def placed_device(choice: str, jobs_per_gpu: int, lock_dir: Path | None = None,
                  ) -> Iterator[tuple[torch.device, dict | None]]:
    """(device, placement) for the ``with`` block: placement is what run.json records of the
    GPU slot held meanwhile (``gpu_slots.Placement`` and the GPU's name), None on the CPU."""
    check_device(choice)
    if not uses_cuda(choice):
        yield torch.device("cpu"), None
        return
    with gpu_slot(torch.cuda.device_count(), jobs_per_gpu, lock_dir) as placement:
        device = torch.device("cuda", placement.index)
        torch.cuda.set_device(device)  # no CUDA context on another GPU for "current device" work
        yield device, {**placement.record(), "name": torch.cuda.get_device_name(device)}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"
