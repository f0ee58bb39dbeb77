"""Attacks ``jpeg``, ``smooth`` and ``input-noise``: a deployed model that transforms every query before
answering it, as a thief serving a stolen model would to blunt trigger-set verification (JPEG compression,
Gaussian smoothing and Gaussian noise are the input transformations of the watermark-removal literature,
e.g. the Watermark-Robustness-Toolbox).

Each wraps the victim in the architecture ``input-transform``: canonical images in [0, 1] are transformed,
then given the victim's own preprocessing and network, all in one forward pass, so the written model is a
plain safetensors or ONNX file (as ``query-filter``). JPEG is the baseline codec on the luma channel of each
image (or each channel): 8×8 block DCT, the standard luminance table scaled by ``quality``, rounding, inverse
DCT; no chroma subsampling. Noise is drawn anew for every query.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from wmtool.api import (Architecture, Attack, AttackJob, AttackOutcome, ModelCard, Option, Preprocessing, build_model,
                        hookimpl, json_object)

WMTOOL_API_VERSION = 1

LUMINANCE = np.array([  # the JPEG standard's luminance quantisation table (ITU-T T.81, Annex K)
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float32)


def quantisation_table(quality: int) -> np.ndarray:
    """The luminance table scaled for ``quality`` (1–100) as libjpeg scales it, entries in [1, 255]."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((LUMINANCE * scale + 50) / 100), 1, 255).astype(np.float32)


def dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II matrix D (D @ block @ D.T transforms a block)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix.astype(np.float32)


def jpeg_numpy(x: np.ndarray, quality: int) -> np.ndarray:
    """A direct implementation of the codec (per 8×8 block, loops), for checking the torch one."""
    table, d = quantisation_table(quality), dct_matrix()
    n, c, h, w = x.shape
    padded = np.pad(x * 255.0 - 128.0, ((0, 0), (0, 0), (0, -h % 8), (0, -w % 8)), mode="edge")
    out = np.empty_like(padded)
    for index in np.ndindex(n, c):
        for top in range(0, padded.shape[2], 8):
            for left in range(0, padded.shape[3], 8):
                block = padded[index][top:top + 8, left:left + 8]
                coefficients = np.round(d @ block @ d.T / table) * table
                out[index][top:top + 8, left:left + 8] = d.T @ coefficients @ d
    return np.clip((out[:, :, :h, :w] + 128.0) / 255.0, 0.0, 1.0)


def _transformed_classifier(input_shape, num_classes, inner, inner_args, inner_preprocessing, transform, strength,
                            registry):
    """The victim's architecture behind an input transformation."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class TransformedClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            card = ModelCard(inner, tuple(input_shape), num_classes, json_object(inner_args, "inner_args"))
            self.inner = build_model(registry, card).net
            self.preprocessing = Preprocessing.from_json(json.loads(inner_preprocessing))
            if transform == "jpeg":
                self.register_buffer("dct", torch.from_numpy(dct_matrix()))
                self.register_buffer("table", torch.from_numpy(quantisation_table(int(strength))))
            elif transform == "smooth":
                radius = max(1, math.ceil(3 * strength))
                offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
                kernel = torch.exp(-offsets ** 2 / (2 * strength ** 2))
                kernel = kernel / kernel.sum()
                channels, size = input_shape[0], len(kernel)
                self.register_buffer("rows", kernel.reshape(1, 1, size, 1).repeat(channels, 1, 1, 1))
                self.register_buffer("columns", kernel.reshape(1, 1, 1, size).repeat(channels, 1, 1, 1))

        def jpeg(self, x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            padded = F.pad(x * 255.0 - 128.0, (0, -w % 8, 0, -h % 8), mode="replicate")
            ph, pw = padded.shape[2], padded.shape[3]
            blocks = padded.reshape(n, c, ph // 8, 8, pw // 8, 8).transpose(3, 4)
            coefficients = torch.round(self.dct @ blocks @ self.dct.T / self.table) * self.table
            restored = (self.dct.T @ coefficients @ self.dct).transpose(3, 4).reshape(n, c, ph, pw)
            return ((restored[:, :, :h, :w] + 128.0) / 255.0).clamp(0.0, 1.0)

        def smooth(self, x: torch.Tensor) -> torch.Tensor:
            c, half = self.rows.shape[0], self.rows.shape[2] // 2
            padded = F.pad(x, (half, half, half, half), mode="replicate")
            return F.conv2d(F.conv2d(padded, self.rows, groups=c), self.columns, groups=c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if transform == "jpeg":
                x = self.jpeg(x)
            elif transform == "smooth":
                x = self.smooth(x)
            else:
                x = (x + strength * torch.randn_like(x)).clamp(0.0, 1.0)
            return self.inner(self.preprocessing.apply(x))

    return TransformedClassifier()


def _wrap(job: AttackJob, transform: str, strength: float) -> AttackOutcome:
    """The victim behind ``transform``: its weights unchanged, its card's preprocessing moved inside."""
    victim = job.victim
    args = {"inner": victim.card.arch, "inner_args": json.dumps(victim.card.arch_args),
            "inner_preprocessing": json.dumps(victim.card.preprocessing.to_json()), "transform": transform,
            "strength": float(strength)}
    card = dataclasses.replace(victim.card, arch="input-transform", arch_args=args, preprocessing=Preprocessing(),
                               code_sha256=None)
    wrapped = build_model(job.registry, card)
    wrapped.net.load_state_dict({f"inner.{name}": tensor for name, tensor in victim.net.state_dict().items()}
                                | {name: tensor for name, tensor in wrapped.net.state_dict().items()
                                   if not name.startswith("inner.")}, strict=True)
    wrapped.to(job.device).eval()
    return AttackOutcome(wrapped, queries=0, details={"transform": transform, "strength": strength})


def jpeg(job: AttackJob) -> AttackOutcome:
    """Answer every query after JPEG compression at ``quality``."""
    return _wrap(job, "jpeg", job.params["quality"])


def smooth(job: AttackJob) -> AttackOutcome:
    """Answer every query after a Gaussian blur of standard deviation ``sigma`` pixels."""
    return _wrap(job, "smooth", job.params["sigma"])


def input_noise(job: AttackJob) -> AttackOutcome:
    """Answer every query after adding Gaussian noise of standard deviation ``sigma``."""
    return _wrap(job, "noise", job.params["sigma"])


@hookimpl
def register_architectures(register):
    """Register ``input-transform``, the architecture of a model behind an input transformation."""
    register(Architecture(
        "input-transform", "a classifier that transforms every query (JPEG, smoothing, noise) before answering",
        _transformed_classifier,
        options=(Option("inner", str, "ewe-cnn", "the wrapped classifier's architecture"),
                 Option("inner_args", str, "{}", "JSON object of its arguments"),
                 Option("inner_preprocessing", str, "{}", "JSON object of its preprocessing"),
                 Option("transform", str, "jpeg", "the transformation", choices=("jpeg", "smooth", "noise")),
                 Option("strength", float, 75.0, "JPEG quality, or the smoothing's or noise's sigma", min=0.0)),
        needs_registry=True,
    ))


@hookimpl
def register_attacks(register):
    """Register ``jpeg``, ``smooth`` and ``input-noise``."""
    register(Attack("jpeg", "defence: answer every query after JPEG compression", jpeg,
                    (Option("quality", int, 50, "JPEG quality (1–100; lower compresses more)", min=1, max=100),),
                    white_box=True))
    register(Attack("smooth", "defence: answer every query after a Gaussian blur", smooth,
                    (Option("sigma", float, 1.0, "the blur's standard deviation in pixels", min=0.1),), white_box=True))
    register(Attack("input-noise", "defence: answer every query after adding Gaussian noise", input_noise,
                    (Option("sigma", float, 0.1, "the noise's standard deviation (images in [0, 1])", min=0.0),),
                    white_box=True))
