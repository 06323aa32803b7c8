#!/usr/bin/python3
"""Generates the PyTorch fixtures the C# tests check (commit the output; CI never runs this).

Run from this folder with Debian's PyTorch:  /usr/bin/python3 make_fixtures.py
Writes, per case, <case>.weights.safetensors (a PyTorch nn.Sequential state_dict), <case>.input.npy and the
expected outputs, plus manifest.json describing every case. Safetensors files are written here by hand from the
format's definition (8-byte little-endian header length, JSON header, raw little-endian data) so no extra
package is needed; the files are what safetensors.torch.save_file would produce, minus its key ordering.
"""
import json
import struct
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)


def pair(v):
    return tuple(int(p) for p in v.split("x")) if "x" in v else int(v)


class Residual(nn.Module):
    """y = body(x) + shortcut(x): the engine's residual(BODY; SHORTCUT), state-dict names body.* and shortcut.*."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def build(spec, in_shape):
    """nn.Sequential for a gpucnn spec, inferring channels/features like the engine does."""
    layers, shape = [], list(in_shape)
    for text in split_top(spec):
        text = text.strip()
        name, args = (text.split("(", 1)[0], text[text.index("(") + 1:-1].split(",")) if "(" in text else (text, [])
        pos = [a for a in args if "=" not in a]
        named = dict(a.split("=") for a in args if "=" in a)
        if name == "conv":
            layer = nn.Conv2d(shape[0], int(pos[0]), pair(pos[1]), stride=pair(named.get("stride", "1")),
                              padding=pair(named.get("pad", "0")), dilation=pair(named.get("dilation", "1")),
                              groups=int(named.get("groups", "1")), bias=named.get("bias", "true") == "true")
        elif name == "batchnorm":
            cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layer = cls(shape[0], momentum=float(named.get("momentum", "0.1")), eps=float(named.get("eps", "1e-5")))
        elif name == "globalavgpool":
            layer = nn.AdaptiveAvgPool2d(1)
        elif name == "dropout":
            layer = nn.Dropout(float(pos[0]))
        elif name in ("maxpool", "avgpool"):
            k = pair(pos[0])
            cls = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
            extra = {"count_include_pad": named.get("count_include_pad", "true") == "true"} if name == "avgpool" else {}
            layer = cls(k, stride=pair(named["stride"]) if "stride" in named else None, padding=pair(named.get("pad", "0")),
                        ceil_mode=named.get("ceil_mode", "false") == "true", **extra)
        elif name == "pad":
            amounts = tuple(int(a) for a in pos) * (4 if len(pos) == 1 else 1)  # (left, right, top, bottom)
            value = float(named.get("value", "0"))
            layer = nn.ConstantPad2d(amounts, value) if value != 0 else nn.ZeroPad2d(amounts)
        elif name == "relu":
            layer = nn.ReLU()
        elif name == "relu6":
            layer = nn.ReLU6()
        elif name == "leakyrelu":
            layer = nn.LeakyReLU(float(pos[0]) if pos else 0.01)
        elif name == "sigmoid":
            layer = nn.Sigmoid()
        elif name == "tanh":
            layer = nn.Tanh()
        elif name == "gelu":
            layer = nn.GELU()
        elif name == "silu":
            layer = nn.SiLU()
        elif name == "residual":
            inner = text[text.index("(") + 1:-1]
            branches = split_top(inner, ";")
            body = build(branches[0], shape)
            shortcut = build(branches[1], shape) if len(branches) > 1 else nn.Sequential()
            layer = Residual(body, shortcut)
        elif name == "flatten":
            layer = nn.Flatten()
        elif name == "dense":
            layer = nn.Linear(shape[0], int(pos[0]))
        else:
            raise ValueError(name)
        layers.append(layer)
        with torch.no_grad():
            layer.eval()  # shape inference only: batch norm in training mode would need more than one value
            shape = list(layer(torch.zeros([1] + shape)).shape[1:])
            layer.train()
    return nn.Sequential(*layers)


def split_top(spec, separator=","):
    parts, depth, start = [], 0, 0
    for i, c in enumerate(spec):
        depth += c == "("
        depth -= c == ")"
        if c == separator and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    return parts


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for key, t in tensors.items():
        counter = t.dtype == torch.int64  # num_batches_tracked: PyTorch keeps it as an int64 scalar
        data = t.detach().contiguous().numpy().astype("<i8" if counter else "<f4").tobytes()
        header[key] = {"dtype": "I64" if counter else "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


PREDICT_CASES = {
    "lenet5": ("conv(6,5,pad=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)", [1, 28, 28], 3),
    "strided": ("conv(4,3x1,stride=2,pad=1x0),leakyrelu(0.2),avgpool(2,stride=1),conv(3,1),tanh,flatten,dense(5)", [2, 9, 7], 2),
    "overlap": ("conv(3,3,pad=1),sigmoid,maxpool(3,stride=2),flatten,dense(6),relu,dense(4)", [3, 11, 10], 4),
    "pads": ("maxpool(3,stride=1,pad=1),conv(2,2x3,stride=1x2),relu,avgpool(2,pad=1),flatten,dense(3),sigmoid,dense(2)", [1, 8, 9], 2),
    "gelu_silu": ("conv(4,3,pad=1),gelu,maxpool(2),conv(5,3),silu,flatten,dense(6),gelu,dense(4),silu,dense(3)", [2, 10, 10], 3),
    "residual": ("conv(4,3,pad=1),relu,residual(conv(4,3,pad=1),relu,conv(4,3,pad=1)),relu,"
                 "residual(conv(6,3,stride=2,pad=1),gelu,conv(6,3,pad=1); conv(6,1,stride=2)),silu,flatten,dense(5)", [3, 8, 8], 2),
    # Evaluation mode with running statistics that a few training batches moved (PREDICT_WARMUP).
    "batchnorm": ("conv(4,3,pad=1,bias=false),batchnorm,relu,residual(conv(4,3,pad=1,bias=false),batchnorm(momentum=0.3),relu,"
                  "conv(4,3,pad=1,bias=false),batchnorm; conv(4,1,bias=false),batchnorm(eps=0.001)),relu,globalavgpool,flatten,"
                  "dense(6),batchnorm,relu,dense(3)", [2, 7, 7], 3),
    # Evaluation mode: dropout is the identity.
    "dropout": ("conv(3,3),relu,dropout(0.25),flatten,dense(8),dropout(0.5),relu,dense(3)", [1, 6, 6], 4),
    "grouped": ("conv(6,3,pad=2,dilation=2,groups=3),relu,conv(6,3x2,dilation=1x2,groups=6,bias=false),batchnorm,relu,"
                "conv(4,1,groups=2),flatten,dense(3)", [3, 9, 9], 2),
    # ceil_mode: a last window cut at the far edge (max), and at the padded edge with padding counted (the average's
    # divisor is what is left of the window inside the padded input).
    "ceil": ("conv(3,3),relu,maxpool(3,stride=2,ceil_mode=true),avgpool(3,stride=2,pad=1,ceil_mode=true),flatten,dense(4)",
             [2, 11, 10], 3),
    # count_include_pad=False: each window divided by its part inside the input (with ceil mode's cut windows too).
    "exclude_pad": ("conv(3,3,pad=1),relu,avgpool(3,stride=2,pad=1,count_include_pad=false),"
                    "avgpool(2,pad=1,ceil_mode=true,count_include_pad=false),flatten,dense(4)", [2, 9, 10], 3),
    # ZeroPad2d one-sided before a convolution, ConstantPad2d cropping two sides and padding one, ZeroPad2d(1).
    "pad": ("pad(1,0,2,1),conv(3,3),relu,pad(-1,2,0,-1,value=0.25),maxpool(2),pad(1),avgpool(2),flatten,dense(4)", [2, 9, 8], 3),
    # MobileNetV2's inverted residual: 1x1 expansion, ReLU6, depthwise 3x3, ReLU6, linear 1x1 projection, identity shortcut
    # (the input scaled by 8 first, so that ReLU6 clips at 6 too).
    "relu6": ("conv(8,3,pad=1),relu6,residual(conv(16,1,bias=false),batchnorm,relu6,conv(16,3,pad=1,groups=16,bias=false),batchnorm,relu6,"
              "conv(8,1,bias=false),batchnorm),relu6,globalavgpool,flatten,dense(3)", [2, 6, 6], 3),
    # Depthwise convolutions with channel multipliers 3 and 2 (each group one input channel, several outputs).
    "multiplier": ("conv(2,3,pad=1),conv(6,3,pad=1,groups=2),relu,conv(12,3,stride=2,groups=6,bias=false),relu,flatten,dense(3)",
                   [1, 9, 9], 2),
}

# Inputs scaled up for cases that must reach an activation's upper clip (ReLU6 at 6); the rest as drawn.
INPUT_SCALE = {"relu6": 8.0, "relu6_sgd": 8.0}

# Training batches run through a predict case before its weights are saved, so its running statistics are not the
# initial ones (and num_batches_tracked counts them).
PREDICT_WARMUP = {"batchnorm": 3}

TRAIN_CASES = {
    "sgd": ("conv(4,3,pad=1),relu,maxpool(2),conv(6,3),tanh,flatten,dense(8),relu,dense(5)", [1, 10, 10], 6,
            dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam": ("conv(3,3),leakyrelu(0.1),avgpool(2),flatten,dense(7),sigmoid,dense(4)", [2, 8, 8], 5,
             dict(optimizer="adam", lr=0.01, weight_decay=0.001)),
    "residual_sgd": ("conv(3,3,pad=1),gelu,residual(conv(3,3,pad=1),silu,conv(3,3,pad=1)),relu,"
                     "residual(conv(4,3,stride=2,pad=1),relu,conv(4,1); conv(4,1,stride=2)),flatten,dense(6),silu,dense(4)",
                     [2, 8, 8], 4, dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # Training mode: batch statistics normalise, running statistics and num_batches_tracked move.
    "batchnorm_sgd": ("conv(4,3,pad=1,bias=false),batchnorm,relu,residual(conv(4,3,stride=2,pad=1,bias=false),batchnorm,relu,"
                      "conv(4,3,pad=1,bias=false),batchnorm(momentum=0.5); conv(4,1,stride=2,bias=false),batchnorm),relu,"
                      "globalavgpool,flatten,dense(5),batchnorm,dense(3)", [1, 8, 8], 6,
                      dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adamw": ("conv(3,3),relu,flatten,dense(4)", [1, 6, 6], 5, dict(optimizer="adamw", lr=0.01, weight_decay=0.1)),
    "grouped_sgd": ("conv(4,3,pad=1,groups=2),relu,conv(4,3,stride=2,dilation=2,groups=4,bias=false),relu,flatten,dense(3)",
                    [2, 9, 9], 4, dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # Three full-batch steps with every step's gradients clipped to a total L2 norm below theirs (clip_grad_norm_).
    "clip_sgd": ("conv(4,3,pad=1),relu,maxpool(2),flatten,dense(6),tanh,dense(4)", [2, 8, 8], 6,
                 dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01, epochs=3, schedule="constant", warmup=0,
                      clip_grad_norm=0.2)),
    # Four full-batch steps (one per epoch): StepLR (per epoch) after a linear warm-up (per step), label smoothing.
    "smoothing_schedule": ("conv(4,3,pad=1,bias=false),batchnorm,relu,globalavgpool,flatten,dense(3)", [2, 6, 6], 6,
                           dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, label_smoothing=0.1, epochs=4,
                                schedule="step", step_size=2, gamma=0.5, warmup=3)),
    # ceil_mode pooling's gradients: the cut windows' switches and shares.
    "ceil_sgd": ("conv(3,3),relu,maxpool(3,stride=2,ceil_mode=true),avgpool(3,stride=2,pad=1,ceil_mode=true),flatten,dense(4)", [2, 11, 10], 4,
                 dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # count_include_pad=False's gradients: each window's share divided by its part inside the input.
    "exclude_pad_sgd": ("conv(3,3,pad=1),relu,avgpool(3,stride=2,pad=1,ceil_mode=true,count_include_pad=false),flatten,dense(4)",
                        [2, 9, 10], 4, dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # Padding's gradients: dy's part over the input, none for the cropped rows and columns.
    "pad_sgd": ("pad(1,0,2,1),conv(3,3),relu,pad(-1,2,0,-1,value=0.25),maxpool(2),pad(1),avgpool(2),flatten,dense(4)", [2, 9, 8], 4,
                dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # ReLU6's gradient, cut at 0 and at 6, through an inverted residual block in training mode.
    "relu6_sgd": ("conv(8,3,pad=1),relu6,residual(conv(16,1,bias=false),batchnorm,relu6,conv(16,3,pad=1,groups=16,bias=false),batchnorm,relu6,"
                  "conv(8,1,bias=false),batchnorm),relu6,globalavgpool,flatten,dense(3)", [2, 6, 6], 4,
                  dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    # Depthwise convolutions with channel multipliers: their filter and input gradients, group by group.
    "multiplier_sgd": ("conv(2,3,pad=1),conv(6,3,pad=1,groups=2),relu,conv(12,3,stride=2,groups=6,bias=false),relu,flatten,dense(3)",
                       [1, 9, 9], 4, dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
}

# Several full-batch steps of each optimizer with the settings the command line does not expose (Nesterov, dampening,
# no momentum, betas and eps): steps ≥ 2 are where momentum, dampening and Adam's bias correction show (Adam's first
# step is ±lr whatever its gradients' size). The C# side runs them through the API (TorchParityTests).
OPTIMIZER_CASES = {
    "sgd_nesterov": dict(optimizer="sgd", lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01, steps=4),
    "sgd_dampening": dict(optimizer="sgd", lr=0.1, momentum=0.8, dampening=0.3, nesterov=False, weight_decay=0.0, steps=4),
    "sgd_plain": dict(optimizer="sgd", lr=0.2, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.01, steps=3),
    "adam_betas": dict(optimizer="adam", lr=0.01, betas=[0.8, 0.95], eps=1e-6, weight_decay=0.001, steps=5),
    "adamw_betas": dict(optimizer="adamw", lr=0.01, betas=[0.85, 0.99], eps=1e-7, weight_decay=0.1, steps=5),
}
OPTIMIZER_ARCH, OPTIMIZER_INPUT, OPTIMIZER_COUNT = "conv(3,3),tanh,flatten,dense(6),sigmoid,dense(4)", [2, 6, 6], 5

# The update formulas alone, over many steps of given gradients (no model, so nothing but the optimizer differs): a
# hyperparameter held as a float must act as the decimal written (1 - 0.9999 formed from 0.9999f is off by 1.7e-4), and
# a zero weight decay adds nothing (0 * inf would make an infinite parameter NaN). In the cases without weight decay the
# parameter's last values are +inf, -inf and NaN.
UPDATE_CASES = {
    "adam_long": dict(optimizer="adam", lr=1e-3, betas=[0.9, 0.9999], eps=1e-8, weight_decay=0.0, steps=150),
    "adam_l2": dict(optimizer="adam", lr=3e-3, betas=[0.8, 0.999], eps=1e-6, weight_decay=0.01, steps=100),
    "adamw_long": dict(optimizer="adamw", lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.05, steps=100),
    "sgd_high_dampening": dict(optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.99, nesterov=False, weight_decay=0.0, steps=100),
    "sgd_nesterov_decay": dict(optimizer="sgd", lr=0.02, momentum=0.95, dampening=0.0, nesterov=True, weight_decay=0.003, steps=100),
}
UPDATE_SIZE = 128

# Learning rates per optimizer step from PyTorch's own schedulers: the epoch schedule (StepLR or CosineAnnealingLR,
# stepped per epoch) times the warm-up (LinearLR from 1/N to 1 over N steps, stepped per batch).
SCHEDULES = {
    "step": dict(lr=0.1, epochs=6, steps_per_epoch=3, schedule="step", step_size=2, gamma=0.3, warmup=5),
    "cosine": dict(lr=0.05, epochs=5, steps_per_epoch=2, schedule="cosine", warmup=3),
    "constant": dict(lr=0.01, epochs=2, steps_per_epoch=4, schedule="constant", warmup=6),
}


def schedule_rates(s):
    """lr of every optimizer step under PyTorch's schedulers, as the engine's --schedule/--warmup define them."""
    epoch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=s["lr"])
    if s["schedule"] == "step":
        epoch_sched = torch.optim.lr_scheduler.StepLR(epoch_opt, step_size=s["step_size"], gamma=s["gamma"])
    elif s["schedule"] == "cosine":
        epoch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(epoch_opt, T_max=s["epochs"])
    else:
        epoch_sched = torch.optim.lr_scheduler.ConstantLR(epoch_opt, factor=1.0)
    warm_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    n = s["warmup"]
    warm_sched = torch.optim.lr_scheduler.LinearLR(warm_opt, start_factor=1.0 / n, end_factor=1.0, total_iters=n - 1) if n > 0 else None
    rates = []
    for _ in range(s["epochs"]):
        for _ in range(s["steps_per_epoch"]):
            factor = warm_opt.param_groups[0]["lr"] if warm_sched else 1.0
            rates.append(epoch_opt.param_groups[0]["lr"] * factor)
            if warm_sched:
                warm_opt.step()
                warm_sched.step()
        epoch_opt.step()
        epoch_sched.step()
    return rates

DROPOUT_PS = [0.1, 0.25, 0.3, 0.33, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]


def main():
    manifest = {"torch": torch.__version__, "predict": {}, "train": {}}
    for name, (spec, shape, n) in PREDICT_CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))  # per case: a new case leaves the others' files as they were
        model = build(spec, shape)
        x = torch.randn([n] + shape) * INPUT_SCALE.get(name, 1.0)
        with torch.no_grad():
            for _ in range(PREDICT_WARMUP.get(name, 0)):
                model(torch.randn([n] + shape) * 2 + 0.5)
            model.eval()
            logits = model(x)
        save_safetensors(f"{name}.weights.safetensors", model.state_dict(), {"format": "pt"})
        np.save(f"{name}.input.npy", x.numpy().astype(np.float32))
        np.save(f"{name}.logits.npy", logits.numpy().astype(np.float32))
        manifest["predict"][name] = {"arch": spec, "input": "x".join(map(str, shape))}

    for name, (spec, shape, n, hp) in TRAIN_CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))
        model = build(spec, shape)
        x = torch.randn([n] + shape) * INPUT_SCALE.get(name, 1.0)
        classes = model[-1].out_features
        y = torch.randint(0, classes, (n,))
        save_safetensors(f"{name}.init.safetensors", model.state_dict(), {"format": "pt"})
        np.save(f"{name}.images.npy", x.numpy().astype(np.float32))
        np.save(f"{name}.labels.npy", y.numpy().astype(np.int64))
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        elif hp["optimizer"] == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        epochs = hp.get("epochs", 1)
        rates = schedule_rates(dict(hp, steps_per_epoch=1, epochs=epochs)) if "schedule" in hp else [hp["lr"]] * epochs
        first_loss = None
        for rate in rates:  # one full-batch step per epoch
            for group in opt.param_groups:
                group["lr"] = rate
            loss = F.cross_entropy(model(x), y, label_smoothing=hp.get("label_smoothing", 0.0))
            first_loss = loss.item() if first_loss is None else first_loss
            opt.zero_grad()
            loss.backward()
            if "clip_grad_norm" in hp:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip_grad_norm"])
                assert norm > hp["clip_grad_norm"], f"{name}: the gradients' norm {norm} is not clipped"
            opt.step()
        loss = torch.tensor(first_loss)
        save_safetensors(f"{name}.after.safetensors", model.state_dict(), {"format": "pt"})
        manifest["train"][name] = {"arch": spec, "input": "x".join(map(str, shape)), "count": n, "loss": loss.item(), **hp}

    manifest["optimizers"] = {}
    for name, hp in OPTIMIZER_CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))
        model = build(OPTIMIZER_ARCH, OPTIMIZER_INPUT)
        x = torch.randn([OPTIMIZER_COUNT] + OPTIMIZER_INPUT)
        y = torch.randint(0, 4, (OPTIMIZER_COUNT,))
        save_safetensors(f"{name}.init.safetensors", model.state_dict(), {"format": "pt"})
        np.save(f"{name}.images.npy", x.numpy().astype(np.float32))
        np.save(f"{name}.labels.npy", y.numpy().astype(np.int64))
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"], dampening=hp["dampening"],
                                  nesterov=hp["nesterov"], weight_decay=hp["weight_decay"])
        else:
            kind = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
            opt = kind(model.parameters(), lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"], weight_decay=hp["weight_decay"])
        for _ in range(hp["steps"]):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        save_safetensors(f"{name}.after.safetensors", model.state_dict(), {"format": "pt"})
        manifest["optimizers"][name] = {"arch": OPTIMIZER_ARCH, "input": "x".join(map(str, OPTIMIZER_INPUT)), **hp}

    manifest["updates"] = {}
    for name, hp in UPDATE_CASES.items():
        torch.manual_seed(zlib.crc32(name.encode()))
        param = torch.randn(UPDATE_SIZE)
        grads = torch.randn(hp["steps"], UPDATE_SIZE) * torch.logspace(-3, 1, UPDATE_SIZE)  # gradients of many sizes
        if hp["weight_decay"] == 0.0:
            param[-3:] = torch.tensor([float("inf"), float("-inf"), float("nan")])
        np.save(f"{name}.param.npy", param.numpy())
        np.save(f"{name}.grads.npy", grads.numpy())
        p = param.clone().requires_grad_(True)
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD([p], lr=hp["lr"], momentum=hp["momentum"], dampening=hp["dampening"], nesterov=hp["nesterov"],
                                  weight_decay=hp["weight_decay"])
        else:
            kind = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
            opt = kind([p], lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"], weight_decay=hp["weight_decay"])
        for step in range(hp["steps"]):
            p.grad = grads[step].clone()
            opt.step()
        np.save(f"{name}.after.npy", p.detach().numpy())
        manifest["updates"][name] = hp

    manifest["schedules"] = {name: dict(s, rates=schedule_rates(s)) for name, s in SCHEDULES.items()}
    # What a kept element of ones becomes in training: PyTorch's scale 1/(1 - p), rounded as PyTorch rounds it.
    torch.manual_seed(zlib.crc32(b"dropout_scales"))
    manifest["dropout_scales"] = {}
    for p in DROPOUT_PS:
        y = F.dropout(torch.ones(4096), p, training=True)
        manifest["dropout_scales"][repr(p)] = float(y[y != 0][0].item())
    with open("manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
    print("wrote", len(PREDICT_CASES), "predict and", len(TRAIN_CASES), "train fixtures")


if __name__ == "__main__":
    main()
