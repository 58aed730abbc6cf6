"""Let a CUDA-built torchvision wheel import next to a CPU-only torch.

PyPI's torchvision wheel is linked against CUDA; beside a `+cpu` torch its C extension cannot
load. torchvision tolerates that, except that its `_meta_registrations` registers fake kernels
for `torchvision::nms` and `qnms`, whose schemas then do not exist, so `import torchvision`
(and with it transformers' image processors and colpali-engine) fails. Defining the two schemas
first lets the pure-Python parts (transforms) work. Nothing is done when the builds match.
"""

from __future__ import annotations

import sys
from importlib import metadata

_library = None  # keeps the schema fragment alive


def _needs_shim() -> bool:
    try:
        torch_version = metadata.version("torch")
        tv_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return False
    return "+cpu" in torch_version and "+cpu" not in tv_version and "torchvision" not in sys.modules


def install() -> None:
    global _library
    if _library is not None or not _needs_shim():
        return
    import torch

    if torch.cuda.is_available():
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        if not hasattr(torch.ops.torchvision, op):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library = library
