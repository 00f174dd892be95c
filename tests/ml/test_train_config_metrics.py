"""Training config (YAML -> pydantic), metrics, operating points and the dictation simulator."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from models.training import metrics
from models.training.config import ConfigError, TrainConfig, load_train_config
from models.training.dictation import simulate_dictation, study_rng, word_error_rate
from models.training.thresholds import (
    choose_operating_points,
    threshold_at_sensitivity,
    threshold_at_specificity,
)

REPO = Path(__file__).resolve().parents[2]


def test_shipped_recipe_loads_and_names_the_keys_users_expect() -> None:
    config = load_train_config(REPO / "configs" / "train" / "shipped.yaml")
    model = config.model_config_()
    assert (model.image_encoder, model.image_width) == ("resnet18", 0.5)  # resnet18-half
    assert config.amp == "bf16" and config.fusion_method == "co-attention"
    student = load_train_config(REPO / "configs" / "train" / "student.yaml").model_config_()
    assert student.image_encoder == "resnet10" and student.image_width == 0.25


def test_bad_configs_are_refused_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("batch_size: 4\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        load_train_config(path)
    path.write_text("image_encoder: vgg\n")
    with pytest.raises(ConfigError, match="image_encoder"):
        load_train_config(path)
    path.write_text("amp: fp8\n")
    with pytest.raises(ConfigError, match="amp"):
        load_train_config(path)
    path.write_text("model: {d_model: 30, heads: 4}\n")
    with pytest.raises(ConfigError, match="divisible"):
        load_train_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_train_config(tmp_path / "missing.yaml")
    assert (
        TrainConfig(image_encoder="densenet121").model_config_().image_encoder
        == "monai-densenet121"
    )


def test_auroc_matches_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = (rng.random(60) < 0.4).astype(float)
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(scores[labels == 1], scores[labels == 0])
    ]
    assert metrics.auroc(scores, labels) == pytest.approx(np.mean(pairs))
    assert math.isnan(metrics.auroc(scores, np.zeros(60)))
    with_unknown = labels.copy()
    with_unknown[:5] = np.nan
    keep = ~np.isnan(with_unknown)
    assert metrics.auroc(scores, with_unknown) == pytest.approx(
        metrics.auroc(scores[keep], labels[keep])
    )


def test_bootstrap_interval_contains_the_point_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> float:
        labels = (rng.random((n, 3)) < 0.3).astype(float)
        scores = labels + rng.normal(0, 0.8, (n, 3))
        _, macro, _ = metrics.bootstrap_aurocs(scores, labels, samples=200)
        assert macro.low <= macro.value <= macro.high
        return macro.high - macro.low

    assert width(400) < width(40)


def test_f1_and_calibration_error_on_known_cases() -> None:
    probabilities = np.array([[0.9], [0.8], [0.3], [0.1]])
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    per, macro, micro = metrics.f1_scores(probabilities, labels, np.array([0.5]))
    assert (
        per[0] == pytest.approx(0.5) and macro == pytest.approx(0.5) and micro == pytest.approx(0.5)
    )
    perfect = np.array([[1.0], [0.0]])
    assert metrics.expected_calibration_error(perfect, perfect) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(
        np.array([[0.9], [0.9]]), np.array([[0.0], [0.0]])
    ) == pytest.approx(0.9)


def test_operating_points_meet_their_targets_and_verify_sits_below_decision() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random((500, 18)) < 0.3).astype(float)
    probabilities = np.clip(0.5 * labels + rng.normal(0.25, 0.2, labels.shape), 0, 1)
    p, y = probabilities[:, 0], labels[:, 0] > 0.5
    t = threshold_at_sensitivity(p, y, 0.95)
    assert (p[y] >= t).mean() >= 0.95
    assert (p[y] >= np.nextafter(t, 2)).mean() < 0.95  # the highest such threshold
    s = threshold_at_specificity(p, y, 0.9)
    assert (p[~y] < s).mean() >= 0.9
    # No threshold at that specificity keeps more positives.
    admissible = [t for t in np.unique(p) if (p[~y] < t).mean() >= 0.9]
    assert (p[y] >= s).mean() == max((p[y] >= t).mean() for t in admissible)
    points = choose_operating_points(
        probabilities, labels, decision_target=0.9, verify_sensitivity=0.95
    )
    for slug, decision in points.decision.items():
        assert points.verify[slug] <= decision
    single = labels.copy()
    single[:, 3] = 0
    assert choose_operating_points(probabilities, single).decision["pericardial_effusion"] == 0.5


def test_separable_classes_get_a_threshold_in_the_gap_not_at_the_target_specificity() -> None:
    """A finding the model separates perfectly must not be drafted in 10 % of normal studies."""
    negatives = np.linspace(0.0, 0.2, 90)
    positives = np.linspace(0.6, 1.0, 10)
    p = np.concatenate([negatives, positives])
    y = np.concatenate([np.zeros(90, bool), np.ones(10, bool)])
    t = threshold_at_specificity(p, y, 0.9)
    assert (p[~y] < t).all() and (p[y] >= t).all()
    assert t == pytest.approx(0.4)  # midway between the classes
    # Overlapping classes: the specificity target still binds.
    overlap = np.concatenate([np.linspace(0.0, 1.0, 90), np.linspace(0.5, 1.0, 10)])
    t = threshold_at_specificity(overlap, y, 0.9)
    assert (overlap[~y] < t).mean() >= 0.9


def test_dictation_simulation_degrades_with_noise_and_is_seeded() -> None:
    assert word_error_rate(30) < 0.05 < word_error_rate(10) < 0.6 < word_error_rate(0)
    report = (
        "A 12 mm solid nodule in the right upper lobe. Small left pleural effusion. "
        "No cardiomegaly."
    )
    clean = simulate_dictation(report, study_rng(0, "s1", "d"), snr_db=35.0, sentence_keep=1.0)
    noisy = simulate_dictation(report, study_rng(0, "s1", "d"), snr_db=-5.0, sentence_keep=1.0)
    assert clean.word_accuracy > 0.9 > 0.4 > noisy.word_accuracy
    assert clean.quality.confidence > noisy.quality.confidence
    assert noisy.quality.no_speech_prob > clean.quality.no_speech_prob
    again = simulate_dictation(report, study_rng(0, "s1", "d"), snr_db=-5.0, sentence_keep=1.0)
    assert again == noisy
