"""Crafted PyTorch checkpoints for the .pt reader's bounds (issue 28), saved by the real torch.save, each a few
kilobytes: a model object whose `yaml` dict contains itself (cyclic), one whose `yaml` shares one list so that it
unfolds to 10^12 values (a memo bomb), and one holding a buffer expanded from 1 value to 4e9 (stride 0). Each
must be refused with a message, quickly and in bounded memory.

    python scripts/make_hostile_pt.py   # writes crates/model/tests/fixtures/hostile/*.pt
"""

from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "crates/model/tests/fixtures/hostile"


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.yaml = {"nc": 1, "backbone": [[-1, 1, "Conv", [4, 1]]], "head": [[[0], 1, "Detect", ["nc"]]]}
        self.names = {0: "tree"}


def save(name, model):
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model}, OUT / name)
    print(OUT / name, (OUT / name).stat().st_size, "bytes")


def main():
    m = Tiny()
    m.yaml["self"] = m.yaml
    save("cyclic_yaml.pt", m)

    m = Tiny()
    x = []
    for _ in range(12):
        x = [x] * 10
    m.yaml["bomb"] = x
    save("memo_bomb.pt", m)

    m = Tiny()
    # float16: 8 GB materialized, under pytorch-reader's own 10 GiB limit.
    m.register_buffer("huge", torch.zeros(1, dtype=torch.float16).expand(4_000_000_000))
    save("stride0.pt", m)


if __name__ == "__main__":
    main()
