"""The network, the loss and Algorithm 1 on a CUDA GPU agree with the CPU (run by bench/gpu_check.sh).

Skipped without CUDA. ``NCSN_TEST_DEVICE=cpu`` runs the same checks with the CPU standing in for
the GPU, to check the tests themselves on a machine without one.
"""

from __future__ import annotations

import os

import pytest
import torch

from ncsn.core.losses.dsm import dsm_loss
from ncsn.models.normalization import instance_norm_plus
from ncsn.models.refinenet import NCSN
from ncsn.models.unet import UNet
from ncsn.core.sampling import annealed_langevin

DEVICE = torch.device(os.environ.get("NCSN_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA GPU")
SIGMAS = torch.logspace(0, -2, 10)


def _close(gpu: torch.Tensor, cpu: torch.Tensor, rtol: float) -> None:
    """Largest difference relative to the CPU tensor's largest magnitude."""
    gpu, cpu = gpu.detach().float().cpu(), cpu.detach().float().cpu()
    err = (gpu - cpu).abs().max() / cpu.abs().max().clamp_min(1e-12)
    assert err < rtol, f"relative error {err:.3g} >= {rtol}"


def _same_training_step(cpu_net, gpu_net, x, levels, noise) -> None:
    """One DSM loss and backward on each network (same weights): the GPU's losses equal the CPU's."""
    losses = []
    for net, device in ((cpu_net, torch.device("cpu")), (gpu_net, DEVICE)):
        loss = dsm_loss(net, x.to(device), SIGMAS.to(device), levels=levels.to(device), noise=noise.to(device))
        loss.mean().backward()
        losses.append(loss)
    _close(losses[1], losses[0], 1e-4)


def test_fused_instance_norm_plus_and_its_backward_match_the_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    x, gamma, alpha, beta = (torch.randn(*s, generator=gen, dtype=torch.float64)
                             for s in ((4, 8, 16, 16), (4, 8), (4, 8), (4, 8)))
    outs, grads = [], []
    for device in (torch.device("cpu"), DEVICE):
        leaves = [t.detach().clone().to(device).requires_grad_() for t in (x, gamma, alpha, beta)]  # leaves on each device
        out = instance_norm_plus(*leaves)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append([t.grad for t in leaves])
    _close(outs[1], outs[0], 1e-10)
    for gpu, cpu in zip(grads[1], grads[0]):
        _close(gpu, cpu, 1e-9)


def test_crp_pooling_gradient_on_the_gpu_in_channels_last_matches_the_cpu() -> None:
    """padded_pool5 avoids CUDA's channels-last padded avg_pool2d backward (pytorch/pytorch#188344)."""
    from ncsn.models.layers import padded_pool5

    base = torch.randn(2, 8, 10, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = torch.randn(base.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for device in (torch.device("cpu"), DEVICE):
        x = base.to(device).contiguous(memory_format=torch.channels_last).requires_grad_()
        (padded_pool5(x) * weights.to(device)).sum().backward()
        grads.append(x.grad)
    _close(grads[1], grads[0], 1e-12)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_refinenet_forward_and_training_step_match_the_cpu(channels: int, size: int) -> None:
    torch.manual_seed(0)
    cpu_net = NCSN(channels, size, 16, 10, sigmas=SIGMAS)
    gpu_net = NCSN(channels, size, 16, 10, sigmas=SIGMAS).to(DEVICE)
    gpu_net.load_state_dict(cpu_net.state_dict())
    x = torch.rand(8, channels, size, size, generator=torch.Generator().manual_seed(1))
    levels = torch.arange(8) % 10
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        _close(gpu_net(x.to(DEVICE), levels.to(DEVICE)), cpu_net(x, levels), 1e-4)
        _same_training_step(cpu_net, gpu_net, x, levels, noise)
    for (name, p_cpu), p_gpu in zip(cpu_net.named_parameters(), gpu_net.parameters()):
        if p_cpu.grad is not None and p_cpu.grad.abs().max() > 0:
            _close(p_gpu.grad, p_cpu.grad, 1e-3)


def test_unet_training_step_matches_the_cpu_fused_one() -> None:
    """The U-Net on the GPU (plain GroupNorm and SiLU there) against the CPU's fused GroupNorm + FiLM + SiLU."""
    torch.manual_seed(0)
    cpu_net = UNet(1, 28, 16, 10, sigmas=SIGMAS, fused_norm=True)
    gpu_net = UNet(1, 28, 16, 10, sigmas=SIGMAS).to(DEVICE)
    gpu_net.load_state_dict(cpu_net.state_dict())
    with torch.no_grad():
        for p_cpu, p_gpu in zip(cpu_net.parameters(), gpu_net.parameters()):
            p_cpu.add_(0.05 * torch.randn(p_cpu.shape, generator=torch.Generator().manual_seed(p_cpu.numel())))
            p_gpu.copy_(p_cpu)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    levels = torch.arange(8) % 10
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        _same_training_step(cpu_net, gpu_net, x, levels, noise)
    for p_cpu, p_gpu in zip(cpu_net.parameters(), gpu_net.parameters()):
        if p_cpu.grad.abs().max() > 0:
            _close(p_gpu.grad, p_cpu.grad, 1e-3)


def test_bf16_autocast_training_step_is_finite_and_close() -> None:
    torch.manual_seed(0)
    net = NCSN(3, 32, 16, 10, sigmas=SIGMAS).to(DEVICE)
    x = torch.rand(8, 3, 32, 32, device=DEVICE)
    levels = torch.arange(8, device=DEVICE) % 10
    exact = net(x, levels)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        approx = net(x, levels)
        loss = dsm_loss(net, x, SIGMAS.to(DEVICE), levels=levels).mean()
    loss.backward()
    _close(approx, exact, 0.1)
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_algorithm_1_on_the_gpu_is_seeded_and_finite() -> None:
    torch.manual_seed(0)
    net = NCSN(3, 32, 16, 10, sigmas=SIGMAS).to(DEVICE).eval()
    x0 = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    runs = []
    for _ in range(2):
        gen = torch.Generator(device=DEVICE).manual_seed(7)
        with torch.inference_mode():
            runs.append(annealed_langevin(net, x0, SIGMAS.to(DEVICE), n_steps_each=3, eps=2e-5, generator=gen))
    assert runs[0].device.type == DEVICE.type and runs[0].shape == (4, 3, 32, 32)
    assert torch.isfinite(runs[0]).all()
    assert torch.equal(runs[0], runs[1]), "the same generator seed gave different samples"
