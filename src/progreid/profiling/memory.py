"""Peak memory of one inference batch (PLA Sec. 4.5, Fig. 5).

CUDA: ``torch.cuda.max_memory_allocated`` around the forward pass (weights, input and
activations). CPU: the growth of the peak resident set size of a fresh subprocess from just
before the model is built to just after the forward pass (the same three parts), so that nothing
this process allocated before skews it (Linux: the peak is reset through ``/proc/self/clear_refs``
after the imports). Run ``python -m progreid.profiling.memory JOB_JSON``
to measure one job by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import torch
from torch import nn

from progreid.profiling.spec import ModelSpec


def peak_memory_cuda(model: nn.Module, batch_size: int, height: int, width: int,
                     device: torch.device) -> int:
    """Bytes allocated at the peak of one eval-mode forward of ``batch_size`` channels-last
    images."""
    images = torch.randn(batch_size, 3, height, width, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model.eval()(images)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def peak_memory_cpu(spec: ModelSpec, batch_size: int, height: int, width: int,
                    timeout: float = 600.0) -> int:
    """Bytes by which a subprocess's peak RSS grows while it builds ``spec`` and runs one batch."""
    job = json.dumps({"spec": asdict(spec), "batch_size": batch_size, "height": height,
                      "width": width})
    done = subprocess.run([sys.executable, "-m", "progreid.profiling.memory", job],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {spec.label!r} at batch {batch_size} failed "
                           f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field")


def _measure(job: dict) -> int:
    """The subprocess side of :func:`peak_memory_cpu`: reset the peak RSS (``VmHWM``) to the
    current RSS, build the model, run one batch, return the peak's growth in bytes."""
    if not sys.platform.startswith("linux"):
        raise RuntimeError("CPU peak-memory measurement reads /proc/self (Linux only)")
    spec = ModelSpec(**job["spec"])
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to VmRSS (Linux >= 4.0)
    before = _status_kib("VmRSS")
    model = spec.build().eval()
    images = torch.randn(job["batch_size"], 3, job["height"], job["width"])
    with torch.inference_mode():
        model(images)
    return (_status_kib("VmHWM") - before) * 1024


if __name__ == "__main__":
    print(json.dumps({"peak_bytes": _measure(json.loads(sys.argv[1]))}))
