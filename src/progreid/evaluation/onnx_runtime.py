"""The network of an embedding pass run by ONNX Runtime on the CPU (``eval.cpu_runtime:
onnxruntime``).

The model, in eval mode, is exported once per pass with torch's ONNX exporter (its weights as
they are then) and run in an onnxruntime session on torch's thread count. The features equal
PyTorch's to float rounding (about 1e-5 of the largest value); on the 2 development cores the
ImageNet MobileNetV2 of the CPU recipes embeds several times faster than in PyTorch
(docs/performance.md, "CPU fast paths").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from progreid.errors import MissingDependencyError
from progreid.utils.exporting import batch_axis, quiet_exporter

EXTRA_HINT = "pip install 'progreid[export]'"


def require_onnx_runtime() -> None:
    """Raise the error naming the extra when onnxruntime or the exporter's onnxscript is
    missing."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"eval.cpu_runtime = 'onnxruntime' needs onnxruntime and "
                                     f"onnxscript: {EXTRA_HINT}, or set "
                                     "eval.cpu_runtime=torch") from exc


def session_options() -> Any:
    """onnxruntime session options on torch's CPU thread count (onnxruntime must be installed)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return options


class OnnxNetwork:
    """``model`` (float32 ``B x 3 x height x width`` in, ``B x D`` out) as an onnxruntime CPU
    session, called like the model on a CPU batch."""

    def __init__(self, model: nn.Module, height: int, width: int) -> None:
        require_onnx_runtime()
        import onnxruntime

        example = torch.zeros(2, 3, height, width)
        with quiet_exporter():
            program = torch.onnx.export(model.eval(), (example,), dynamo=True,
                                        dynamic_shapes=batch_axis(), verbose=False)
        self.session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                                    session_options(),
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.detach().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: batch})[0])
