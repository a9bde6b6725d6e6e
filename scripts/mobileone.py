"""The seed's MobileOneBlock for Ultralytics, with its bugs fixed, and the tasks.py patch that registers it.

Structure and state_dict names follow the seed (a CSDN blog's block, itself a copy of a public MobileOne port):
``dw_3x3_{j}.conv.{conv,bn}``, ``dw_1x1.conv.{conv,bn}``, ``dw_bn_layer``, ``pw_1x1_{j}.conv.{conv,bn}``,
``pw_bn_layer``; deploy form ``dw_reparam`` / ``pw_reparam``. Fixed here (and in the Rust port):
- ``conv_bn`` keeps nn.Conv2d's default bias, as the seed does, but the fold now includes that bias
  (the seed dropped it, so its deployed block did not match the trained one);
- SE is real: Apple's squeeze-excite (ratio 1/16) on the depthwise sum, before ReLU, as ``se.reduce`` /
  ``se.expand``, and it stays in the deploy forward (the seed dropped it there);
- the seed's typos (``conv_an``, ``in None``) and dead ``get_custom_L2`` are gone.
Ultralytics' ``initialize_weights`` later sets every BatchNorm2d to eps 1e-3, momentum 0.03.

Used only by the fixture and conversion scripts (needs torch + ultralytics).
"""

import inspect

import numpy as np
import torch
import torch.nn as nn


def conv_bn(c1, c2, k, stride, padding, groups=1):
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(c1, c2, k, stride, padding, groups=groups))
    net.add_module("bn", nn.BatchNorm2d(c2))
    return net


class DepthWiseConv(nn.Module):
    def __init__(self, c, k, stride=1):
        super().__init__()
        self.conv = conv_bn(c, c, k, stride, 1 if k == 3 else 0, groups=c)

    def forward(self, x):
        return self.conv(x)


class PointWiseConv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = conv_bn(c1, c2, 1, 1, 0)

    def forward(self, x):
        return self.conv(x)


class SEBlock(nn.Module):
    def __init__(self, c, rd_ratio=0.0625):
        super().__init__()
        rd = max(int(c * rd_ratio), 1)
        self.reduce = nn.Conv2d(c, rd, 1, bias=True)
        self.expand = nn.Conv2d(rd, c, 1, bias=True)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class MobileOneBlock(nn.Module):
    def __init__(self, in_channels, out_channels, k, stride=1, use_se=False):
        super().__init__()
        self.in_channels, self.out_channels, self.k, self.stride = in_channels, out_channels, k, stride
        self.deploy = False
        self.nonlinear = nn.ReLU()
        self.se = SEBlock(in_channels) if use_se else nn.Identity()
        identity = out_channels == in_channels and stride == 1
        self.dw_bn_layer = nn.BatchNorm2d(in_channels) if identity else None
        for i in range(k):
            setattr(self, f"dw_3x3_{i}", DepthWiseConv(in_channels, 3, stride=stride))
        self.dw_1x1 = DepthWiseConv(in_channels, 1, stride=stride)
        self.pw_bn_layer = nn.BatchNorm2d(in_channels) if identity else None
        for i in range(k):
            setattr(self, f"pw_1x1_{i}", PointWiseConv(in_channels, out_channels))

    def forward(self, x):
        if self.deploy:
            x = self.nonlinear(self.se(self.dw_reparam(x)))
            return self.nonlinear(self.pw_reparam(x))
        y = self.dw_1x1(x) + sum(getattr(self, f"dw_3x3_{i}")(x) for i in range(self.k))
        if self.dw_bn_layer is not None:
            y = y + self.dw_bn_layer(x)
        x = self.nonlinear(self.se(y))
        y = sum(getattr(self, f"pw_1x1_{i}")(x) for i in range(self.k))
        if self.pw_bn_layer is not None:
            y = y + self.pw_bn_layer(x)
        return self.nonlinear(y)

    def _fuse(self, branch, groups=None):
        if branch is None:
            return 0, 0
        if isinstance(branch, nn.Sequential):
            kernel, conv_bias, bn = branch.conv.weight, branch.conv.bias, branch.bn
        else:
            input_dim = self.in_channels // groups
            ks = 1 if groups == 1 else 3
            kv = np.zeros((self.in_channels, input_dim, ks, ks), dtype=np.float32)
            for i in range(self.in_channels):
                kv[i, i % input_dim, ks // 2, ks // 2] = 1
            kernel, conv_bias, bn = torch.from_numpy(kv).to(branch.weight.device), None, branch
        std = (bn.running_var + bn.eps).sqrt()
        t = bn.weight / std
        b = -bn.running_mean if conv_bias is None else conv_bias - bn.running_mean
        return kernel * t.reshape(-1, 1, 1, 1), bn.bias + b * t

    def get_equivalent_kernel_bias(self):
        k1, b1 = self._fuse(self.dw_1x1.conv)
        dw_k, dw_b = nn.functional.pad(k1, [1, 1, 1, 1]), b1
        for i in range(self.k):
            k, b = self._fuse(getattr(self, f"dw_3x3_{i}").conv)
            dw_k, dw_b = dw_k + k, dw_b + b
        k, b = self._fuse(self.dw_bn_layer, self.in_channels)
        dw_k, dw_b = dw_k + k, dw_b + b
        pw_k, pw_b = 0, 0
        for i in range(self.k):
            k, b = self._fuse(getattr(self, f"pw_1x1_{i}").conv)
            pw_k, pw_b = pw_k + k, pw_b + b
        k, b = self._fuse(self.pw_bn_layer, 1)
        return dw_k, dw_b, pw_k + k, pw_b + b

    @torch.no_grad()
    def reparameterize(self):
        if self.deploy:
            return
        dw_k, dw_b, pw_k, pw_b = self.get_equivalent_kernel_bias()
        c1, c2 = self.in_channels, self.out_channels
        self.dw_reparam = nn.Conv2d(c1, c1, 3, self.stride, 1, groups=c1, bias=True)
        self.pw_reparam = nn.Conv2d(c1, c2, 1, 1, 0, bias=True)
        self.dw_reparam.weight.data, self.dw_reparam.bias.data = dw_k, dw_b
        self.pw_reparam.weight.data, self.pw_reparam.bias.data = pw_k, pw_b
        for name in ["dw_1x1", "dw_bn_layer", "pw_bn_layer"] + [
            f"{p}_{i}" for p in ("dw_3x3", "pw_1x1") for i in range(self.k)
        ]:
            if hasattr(self, name):
                delattr(self, name)
        self.deploy = True


def register():
    """Patch Ultralytics' parse_model so MobileOneBlock is a base module (c1 inferred, c2 width-scaled), the way
    the blog edits tasks.py."""
    from ultralytics.nn import tasks

    if getattr(tasks, "_mobileone_registered", False):
        return
    src = inspect.getsource(tasks.parse_model)
    marker = "base_modules = frozenset(\n        {\n"
    assert marker in src, "Ultralytics parse_model changed; update scripts/mobileone.py"
    src = src.replace(marker, marker + "            MobileOneBlock,\n", 1)
    tasks.MobileOneBlock = MobileOneBlock
    exec(compile(src, tasks.__file__, "exec"), tasks.__dict__)
    tasks._mobileone_registered = True


def reparameterize_all(model):
    """Fold every MobileOneBlock, then Ultralytics' own Conv+BN fuse."""
    for m in model.modules():
        if isinstance(m, MobileOneBlock):
            m.reparameterize()
    return model.fuse(verbose=False)
