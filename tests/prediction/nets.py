"""Small conv nets with fixed weights for the prediction tests (importable as MODULE:CALLABLE
by the CLI: ``tests.prediction.nets:conv2``)."""

from __future__ import annotations

import torch


class Conv(torch.nn.Sequential):
    """Two 3x3x3 convolutions (zero padded, receptive field radius 2), fixed weights."""

    channel_names = ("mask", "edges")

    def __init__(self, c_in: int = 2, c_out: int = 2) -> None:
        g = torch.Generator().manual_seed(0)
        super().__init__(
            torch.nn.Conv3d(c_in, 4, 3, padding=1), torch.nn.Tanh(),
            torch.nn.Conv3d(4, c_out, 3, padding=1),
        )  # fmt: skip
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def conv2() -> torch.nn.Module:
    """Conv(2 -> 2), scaled for uint16 input; its output channels are named."""
    net = torch.nn.Sequential(Scale(1e-3), Conv(2, 2))
    net.channel_names = Conv.channel_names  # type: ignore[assignment]
    return net


def conv1() -> torch.nn.Module:
    """Conv(1 -> 2) (the sample files' single channel), scaled for 8/16-bit input."""
    return torch.nn.Sequential(Scale(1e-3), Conv(1, 2))


def shrinks() -> torch.nn.Module:
    """A model that loses a voxel per side: what predict must refuse."""
    return torch.nn.Conv3d(2, 1, 3)


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class _Slow(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, seconds: float) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(self.seconds)  # slow enough to be killed half-way
        return self.inner(x)


def slow_conv2() -> torch.nn.Module:
    """conv2, 0.1 s per batch."""
    return _Slow(conv2(), 0.1)
