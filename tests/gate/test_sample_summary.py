"""Per-class accuracy and the confusion matrix of the audited sample, from predictions and labels."""

from __future__ import annotations

import pytest

from auditors.sample_summary import summarize_sample


def test_confusion_rows_are_true_classes_and_columns_predictions() -> None:
    s = summarize_sample(predicted=[0, 0, 1, 2, 2, 2], labels=[0, 1, 1, 2, 2, 0], num_classes=3)
    assert s.confusion == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    assert s.n == 6 and s.n_per_class == [2, 2, 2] and s.predicted_per_class == [2, 1, 3]
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.per_class_accuracy == [0.5, 0.5, 1.0]


def test_a_class_absent_from_the_sample_has_no_accuracy_rather_than_zero() -> None:
    s = summarize_sample(predicted=[0, 1], labels=[0, 1], num_classes=3)
    assert s.per_class_accuracy == [1.0, 1.0, None] and s.n_per_class[2] == 0


def test_unlabelled_data_give_counts_but_no_accuracy() -> None:
    s = summarize_sample(predicted=[1, 1, 0], labels=[-1, -1, -1], num_classes=2)
    assert s.accuracy is None and s.confusion is None and s.predicted_per_class == [1, 2]
