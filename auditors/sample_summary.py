"""Accuracy context for a report: per-class accuracy and the confusion matrix on the audited sample.

Pure Python over predicted and true class indices (one clean forward pass gives them), so it is the
same computation wherever the predictions come from, and testable without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditors.report import SampleSummary


def summarize_sample(
    predicted: Sequence[int], labels: Sequence[int] | None, num_classes: int
) -> SampleSummary:
    """Counts, accuracy and confusion (rows true, columns predicted); labels of -1 mean unlabelled."""
    n = len(predicted)
    predicted_per_class = [0] * num_classes
    for p in predicted:
        predicted_per_class[int(p)] += 1
    if labels is None or not any(int(y) >= 0 for y in labels):
        return SampleSummary(
            n=n,
            n_per_class=[0] * num_classes,
            accuracy=None,
            per_class_accuracy=[None] * num_classes,
            confusion=None,
            predicted_per_class=predicted_per_class,
        )
    if len(labels) != n:
        raise ValueError(f"{n} predictions but {len(labels)} labels")
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for y, p in zip(labels, predicted, strict=True):
        if int(y) >= 0:
            confusion[int(y)][int(p)] += 1
    n_per_class = [sum(row) for row in confusion]
    labelled = sum(n_per_class)
    correct = sum(confusion[c][c] for c in range(num_classes))
    return SampleSummary(
        n=n,
        n_per_class=n_per_class,
        accuracy=correct / labelled,
        per_class_accuracy=[
            confusion[c][c] / n_per_class[c] if n_per_class[c] else None for c in range(num_classes)
        ],
        confusion=confusion,
        predicted_per_class=predicted_per_class,
    )
