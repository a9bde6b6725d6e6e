"""PyTorch side of `cargo run --release --example conv_bench`: the same conv shapes, same table, 2 threads.

    python scripts/bench_conv.py
"""

import time

import torch

torch.set_num_threads(2)
SHAPES = [(8, 32, 32, 80, 3, 32), (8, 64, 64, 40, 3, 64), (8, 64, 64, 40, 3, 1), (8, 64, 64, 40, 1, 1),
          (8, 128, 128, 20, 1, 1)]


def ms(f):
    f()
    s = time.perf_counter()
    for _ in range(5):
        f()
    return (time.perf_counter() - s) * 1e3 / 5


print("| shape | forward ms | forward+backward ms |")
print("|---|---|---|")
for b, c, co, hw, k, g in SHAPES:
    x = torch.randn(b, c, hw, hw, requires_grad=True)
    w = (torch.randn(co, c // g, k, k) * 0.1).requires_grad_()
    r = torch.randn(b, co, hw, hw)

    def fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, padding=k // 2, groups=g).sum()

    def both():
        x.grad = w.grad = None
        (torch.nn.functional.conv2d(x, w, padding=k // 2, groups=g) * r).sum().backward()

    print(f"| {b}x{c}->{co} {hw}x{hw} k{k} groups {g} | {ms(fwd):.2f} | {ms(both):.2f} |")
