"""Time one guidance step of StyleGAN2: render from W+ and backpropagate to the latent.

Random weights (speed does not depend on them). From the repository root, with the kit installed:
    python benchmarks/bench_stylegan2.py --device cuda --sizes 256 1024 --batches 1 8
    python benchmarks/bench_stylegan2.py --sizes 64 --batches 1 2 --channel-base 64   # quick CPU run
"""

from __future__ import annotations

import argparse
import time

import torch

from emostyle.models.stylegan2 import Generator


def bench(size: int, batch: int, device: torch.device, channel_base: int, repeats: int) -> float:
    """Median seconds of forward + backward (to the W+ latent) at one size and batch."""
    torch.manual_seed(0)
    generator = Generator(size, channel_base=channel_base).to(device).eval().requires_grad_(False)
    latent = torch.randn(batch, generator.n_latent, generator.style_dim, device=device,
                         requires_grad=True)
    times = []
    for _ in range(repeats + 1):  # the first run warms up kernels and allocators
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        image, _ = generator([latent], input_is_latent=True, randomize_noise=False)
        image.square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        latent.grad = None
    return sorted(times[1:])[len(times[1:]) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--channel-base", type=int, default=512, help="512: the published models")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device={device} channel_base={args.channel_base} torch={torch.__version__}")
    print("size  batch  forward+backward s  per image s")
    for size in args.sizes:
        for batch in args.batches:
            seconds = bench(size, batch, device, args.channel_base, args.repeats)
            print(f"{size:4d}  {batch:5d}  {seconds:18.4f}  {seconds / batch:11.4f}")


if __name__ == "__main__":
    main()
