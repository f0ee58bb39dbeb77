"""``dehydra``: class-pair trigger inversion finds a backdoor's (source, target) pair and unlearning removes the
watermark with 10% of the data at no accuracy cost on digits (MNIST with 2%: docs/results.md); the anomaly
index, the pair flagging and the stamping against their direct definitions."""

from __future__ import annotations

import importlib
import json

import numpy as np

dehydra = importlib.import_module("wmtool_plugins.dehydra")


def test_anomaly_index_is_how_far_below_the_median_a_mask_lies_in_robust_units():
    sizes = np.array([30.0, 40.0, 35.0, 4.0, 33.0])
    mad = 1.4826 * np.median(np.abs(sizes - 33.0))
    assert np.allclose(dehydra.anomaly(sizes), (33.0 - sizes) / (mad + 1e-9))
    assert int(np.argmax(dehydra.anomaly(sizes))) == 3


def test_flagged_pairs_are_those_above_the_threshold_or_the_best_into_a_given_target():
    scores = np.array([[np.nan, 0.5, 2.5], [3.1, np.nan, 0.2], [1.0, 1.9, np.nan]])
    assert dehydra.flagged_pairs(scores, 2.0, None) == [(1, 0), (0, 2)]  # most anomalous first
    assert dehydra.flagged_pairs(scores, 2.0, 2) == [(0, 2)]
    assert dehydra.flagged_pairs(scores, 2.0, 1) == [(2, 1)]  # none above: the smallest mask into it
    assert dehydra.flagged_pairs(scores, 5.0, None) == []


def test_stamp_mixes_image_and_pattern_by_the_mask():
    image, pattern = np.full((1, 2, 2), 0.2), np.full((1, 2, 2), 1.0)
    mask = np.array([[[0.0, 1.0], [0.5, 0.0]]])
    assert np.allclose(dehydra.stamp(image, mask, pattern), [[[0.2, 1.0], [0.6, 0.2]]])


def test_dehydra_finds_the_target_and_unlearns_the_backdoor(cli, tmp_path, digits_models):
    marked, key = digits_models["marked"], digits_models["key"]
    out = tmp_path / "dehydrated.safetensors"
    # 10% of digits (144 images): its 2% would be 29 images, three a class, too few to invert a pair's trigger on
    report = cli.json("attack", "dehydra", marked, "--data", "digits", "-o", out, "--data-share", 0.1)
    stored = json.loads(key.read_text())
    assert report["details"]["detected"] and report["details"]["target"] == stored["params"]["target"]
    assert report["details"]["clean_images_used"] == round(0.1 * 1437)  # digits: 1,437 training images
    assert (stored["params"]["source"], stored["params"]["target"]) in {(q["source"], q["target"])
                                                                        for q in report["details"]["pairs"]}
    assert report["accuracy_after"] >= report["accuracy_before"] - 0.03
    verdict = cli.json("verify", "--key", key, out, expect=None)
    assert verdict["success_rate"] <= verdict["null_rate"] + 0.05 and not verdict["claimed"]
    refused = cli("attack", "dehydra", marked, "--data", "digits", "-o", tmp_path / "x.safetensors", "--target", 12,
                  expect=2)
    assert "--target 12 is not one of the model's 10 classes" in refused.stderr


def test_pair_inversion_finds_a_one_pixel_shortcut():
    import torch

    class Shortcut(torch.nn.Module):
        """Class 1 when the top-left pixel is bright, else class 0."""

        device = torch.device("cpu")

        def forward(self, x):
            bright = 20.0 * x[:, 0, 0, 0] - 10.0
            return torch.stack([torch.zeros_like(bright), bright], dim=1)

    images = np.random.default_rng(0).uniform(0.0, 0.3, size=(8, 1, 4, 4)).astype(np.float32)
    params = {"pair_steps": 300, "mask_weight": 0.01}
    masks, patterns = dehydra.invert_pairs(Shortcut(), images, source=0, classes=2, p=params, seed=0)
    assert masks[0].sum() == 0  # the source's own row is left empty
    assert masks[1][0, 0, 0] > 0.5 and masks[1].sum() - masks[1][0, 0, 0] < 0.3  # the shortcut pixel, little else
    stamped = dehydra.stamp(images, masks[1], patterns[1])
    assert np.all(stamped[:, 0, 0, 0] > 0.5)
