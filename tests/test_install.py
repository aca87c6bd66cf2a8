"""The environment the Makefile builds: the CPU build of torch 2.13.0 and no CUDA packages."""

from __future__ import annotations

from importlib import metadata


def test_no_cuda_packages_installed():
    nvidia = sorted(d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia"))
    assert nvidia == [], f"CUDA packages installed: {nvidia}"


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
    assert not torch.version.cuda, f"a CUDA build of torch: {torch.version.cuda}"
