"""The seed's MobileOneBlock for Ultralytics (a CSDN blog's block, itself a copy of a public MobileOne port),
and the tasks.py patch that registers it the way the blog does.

This follows the seed's own code: its structure, its forward (sum order included), its state_dict names
(``dw_3x3_{i}.conv.{conv,bn}``, ``dw_1x1.conv.{conv,bn}``, ``dw_bn_layer``, ``pw_1x1_{i}.conv.{conv,bn}``,
``pw_bn_layer``; deployed ``dw_reparam`` / ``pw_reparam``) and its reparameterization maths. The only changes,
each fixing something that stops the seed from running or from matching its own deployed form:
1. typo: the seed defines the helper ``conv_an`` (Conv2d with ``bias=False``, then BatchNorm2d) and calls it as
   ``conv_bn``. The call is the typo; the helper, bias-free as in Apple's MobileOne, is kept.
2. typo: ``if self.pw_bn_layer in None`` -> ``is None``.
3. SE: the seed's ``use_se`` branch is a stub (``...``, ``self.se`` never set). As documented in the README it is
   Apple's squeeze-excite (mean pool, 1x1 to c/16, ReLU, 1x1, sigmoid) on the depthwise sum before its ReLU, at
   the depthwise width (in_channels), named ``se.reduce`` / ``se.expand``, and the deploy forward applies it too
   (the seed's deploy forward skipped ``self.se``).
4. the seed's dead ``get_custom_l2`` stub is left out; its unused ``dilation`` / ``padding_mode`` arguments are
   kept in the signature for row compatibility only.
Ultralytics' ``initialize_weights`` later sets every BatchNorm2d to eps 1e-3, momentum 0.03.

Used only by the fixture, conversion and training scripts (needs torch + ultralytics).
"""

import inspect

import numpy as np
import torch
import torch.nn as nn


def conv_an(in_channels, out_channels, kernel_size, stride, padding, groups=1):
    result = nn.Sequential()
    result.add_module(
        "conv",
        nn.Conv2d(
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False,
        ),
    )
    result.add_module("bn", nn.BatchNorm2d(num_features=out_channels))
    return result


class DepthWiseConv(nn.Module):
    def __init__(self, inc, kernel_size, stride=1):
        super().__init__()
        padding = 1
        if kernel_size == 1:
            padding = 0
        self.conv = conv_an(inc, inc, kernel_size, stride, padding, inc)

    def forward(self, x):
        return self.conv(x)


class PointWiseConv(nn.Module):
    def __init__(self, inc, outc):
        super().__init__()
        self.conv = conv_an(inc, outc, 1, 1, 0)

    def forward(self, x):
        return self.conv(x)


class SEBlock(nn.Module):
    """Apple's MobileOne squeeze-excite (fix 3)."""

    def __init__(self, in_channels, rd_ratio=0.0625):
        super().__init__()
        rd = max(int(in_channels * rd_ratio), 1)
        self.reduce = nn.Conv2d(in_channels, rd, 1, bias=True)
        self.expand = nn.Conv2d(rd, in_channels, 1, bias=True)

    def forward(self, inputs):
        x = nn.functional.adaptive_avg_pool2d(inputs, 1)
        x = torch.sigmoid(self.expand(torch.relu(self.reduce(x))))
        return inputs * x


class MobileOneBlock(nn.Module):
    def __init__(
        self, in_channels, out_channels, k, stride=1, dilation=1, padding_mode="zeros", deploy=False, use_se=False
    ):
        super().__init__()
        self.deploy = deploy
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        kernel_size = 3
        padding = 1
        self.k = k
        self.nonlinearity = nn.ReLU()

        if use_se:
            self.se = SEBlock(in_channels)
        else:
            self.se = nn.Identity()

        if deploy:
            self.dw_reparam = nn.Conv2d(
                in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=True
            )
            self.pw_reparam = nn.Conv2d(in_channels, out_channels, 1, 1, bias=True)
        else:
            self.dw_bn_layer = nn.BatchNorm2d(in_channels) if out_channels == in_channels and stride == 1 else None
            for k_idx in range(k):
                setattr(self, f"dw_3x3_{k_idx}", DepthWiseConv(in_channels, 3, stride=stride))
            self.dw_1x1 = DepthWiseConv(in_channels, 1, stride=stride)

            self.pw_bn_layer = nn.BatchNorm2d(in_channels) if out_channels == in_channels and stride == 1 else None
            for k_idx in range(k):
                setattr(self, f"pw_1x1_{k_idx}", PointWiseConv(in_channels, out_channels))

    def forward(self, inputs):
        if self.deploy:
            x = self.dw_reparam(inputs)
            x = self.nonlinearity(self.se(x))
            x = self.pw_reparam(x)
            x = self.nonlinearity(x)
            return x

        if self.dw_bn_layer is None:
            id_out = 0
        else:
            id_out = self.dw_bn_layer(inputs)

        x_conv_3x3 = []
        for k_idx in range(self.k):
            x = getattr(self, f"dw_3x3_{k_idx}")(inputs)
            x_conv_3x3.append(x)
        x_conv_1x1 = self.dw_1x1(inputs)

        x = id_out + x_conv_1x1 + sum(x_conv_3x3)
        x = self.nonlinearity(self.se(x))

        if self.pw_bn_layer is None:
            id_out = 0
        else:
            id_out = self.pw_bn_layer(x)

        x_conv_1x1 = []
        for k_idx in range(self.k):
            x_conv_1x1.append(getattr(self, f"pw_1x1_{k_idx}")(x))
        x = id_out + sum(x_conv_1x1)
        x = self.nonlinearity(x)
        return x

    def get_equivalent_kernel_bias(self):
        # dw
        dw_kernel_3x3 = []
        dw_bias_3x3 = []
        for k_idx in range(self.k):
            k3, b3 = self._fuse_bn_tensor(getattr(self, f"dw_3x3_{k_idx}").conv)
            dw_kernel_3x3.append(k3)
            dw_bias_3x3.append(b3)
        dw_kernel_1x1, dw_bias_1x1 = self._fuse_bn_tensor(self.dw_1x1.conv)
        dw_kernel_id, dw_bias_id = self._fuse_bn_tensor(self.dw_bn_layer, self.in_channels)
        dw_kernel = sum(dw_kernel_3x3) + self._pad_1x1_to_3x3_tensor(dw_kernel_1x1) + dw_kernel_id
        dw_bias = sum(dw_bias_3x3) + dw_bias_1x1 + dw_bias_id
        # pw
        pw_kernel = []
        pw_bias = []
        for k_idx in range(self.k):
            k1, b1 = self._fuse_bn_tensor(getattr(self, f"pw_1x1_{k_idx}").conv)
            pw_kernel.append(k1)
            pw_bias.append(b1)
        pw_kernel_id, pw_bias_id = self._fuse_bn_tensor(self.pw_bn_layer, 1)

        pw_kernel_1x1 = sum(pw_kernel) + pw_kernel_id
        pw_bias_1x1 = sum(pw_bias) + pw_bias_id
        return dw_kernel, dw_bias, pw_kernel_1x1, pw_bias_1x1

    def _pad_1x1_to_3x3_tensor(self, kernel1x1):
        if kernel1x1 is None:
            return 0
        else:
            return torch.nn.functional.pad(kernel1x1, [1, 1, 1, 1])

    def _fuse_bn_tensor(self, branch, groups=None):
        if branch is None:
            return 0, 0
        if isinstance(branch, nn.Sequential):
            kernel = branch.conv.weight
            running_mean = branch.bn.running_mean
            running_var = branch.bn.running_var
            gamma = branch.bn.weight
            beta = branch.bn.bias
            eps = branch.bn.eps
        else:
            assert isinstance(branch, nn.BatchNorm2d)
            input_dim = self.in_channels // groups
            ks = 1 if groups == 1 else 3
            kernel_value = np.zeros((self.in_channels, input_dim, ks, ks), dtype=np.float32)
            for i in range(self.in_channels):
                kernel_value[i, i % input_dim, ks // 2, ks // 2] = 1
            self.id_tensor = torch.from_numpy(kernel_value).to(branch.weight.device)
            kernel = self.id_tensor
            running_mean = branch.running_mean
            running_var = branch.running_var
            gamma = branch.weight
            beta = branch.bias
            eps = branch.eps
        std = (running_var + eps).sqrt()
        t = (gamma / std).reshape(-1, 1, 1, 1)
        return kernel * t, beta - running_mean * gamma / std

    def switch_to_deploy(self):
        if self.deploy:
            return
        dw_kernel, dw_bias, pw_kernel, pw_bias = self.get_equivalent_kernel_bias()
        self.dw_reparam = nn.Conv2d(
            self.in_channels, self.in_channels, 3, self.stride, 1, groups=self.in_channels, bias=True
        )
        self.pw_reparam = nn.Conv2d(self.in_channels, self.out_channels, 1, 1, bias=True)
        self.dw_reparam.weight.data = dw_kernel
        self.dw_reparam.bias.data = dw_bias
        self.pw_reparam.weight.data = pw_kernel
        self.pw_reparam.bias.data = pw_bias
        for para in self.parameters():
            para.detach_()
        self.__delattr__("dw_1x1")
        for k_idx in range(self.k):
            self.__delattr__(f"dw_3x3_{k_idx}")
            self.__delattr__(f"pw_1x1_{k_idx}")
        if hasattr(self, "dw_bn_layer"):
            self.__delattr__("dw_bn_layer")
        if hasattr(self, "pw_bn_layer"):
            self.__delattr__("pw_bn_layer")
        if hasattr(self, "id_tensor"):
            self.__delattr__("id_tensor")
        self.deploy = True

    reparameterize = switch_to_deploy


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
            m.switch_to_deploy()
    return model.fuse(verbose=False)
