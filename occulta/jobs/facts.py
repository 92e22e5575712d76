"""What the shards of a job record for its merge, so the merge loads neither the model nor the images:
the report's description of the model, the data and the environment (a "skeleton": a report without
audits), the clean prediction of every image of the sample (the sample summary's one forward pass,
split over the shards), and each shard's memory events.

One sharded audit of the job carries the skeleton and the predictions (`carrier`: the first by name,
so every shard and the merge agree without a message); each of its shards predicts its share of the
images (`facts_range`), and the shares tile the sample. Torch-free: a shard computes the facts
(`worker.fanout`), the merge only reads them (`gather`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from auditors.report import Report
from auditors.sample_summary import summarize_sample

# The key of a shard's stored partial that holds its facts; the worker writes it beside the audit's
# own partial (as it does `timing`) and takes it out before the audit's merge reads the partial.
FACTS_KEY = "facts"


class ShardFacts(BaseModel):
    """One shard's facts: memory events always; the carrier's shards add their images' predictions
    (images `start`..`stop` of the sample) and the report skeleton."""

    model_config = ConfigDict(extra="forbid")

    memory: list[str] = Field(default_factory=list)
    start: int = 0
    stop: int = 0
    predicted: list[int] = Field(default_factory=list)
    labels: list[int] | None = None
    skeleton: Report | None = None


def carrier(sharded: Sequence[str]) -> str | None:
    """The sharded audit whose shards carry the skeleton and the predictions."""
    return min(sharded) if sharded else None


def facts_range(
    shard_inputs: Literal["range", "all"], indices: range, positions: int, n_images: int
) -> range:
    """The images a carrier shard predicts. A "range" shard holds only its own images, so it predicts
    those; an "all" shard holds the whole sample, so its share is its range of positions scaled to
    the images (shares of ranges that tile the positions tile the images)."""
    if shard_inputs == "range":
        return indices
    return range(indices.start * n_images // positions, indices.stop * n_images // positions)


def gather(facts: Sequence[ShardFacts], n_images: int) -> Report | None:
    """The report skeleton with the sample summary and every shard's memory events (in the order
    given), or None when the carrier's predictions do not cover the sample exactly once (a "range"
    audit that looks at fewer images than the sample): the merge then loads the model and the images,
    as a single run does."""
    carried = sorted((f for f in facts if f.skeleton is not None), key=lambda f: (f.start, f.stop))
    predicted: list[int] = []
    labels: list[int] = []
    for f in carried:
        if f.start != len(predicted) or f.stop < f.start or len(f.predicted) != f.stop - f.start:
            return None
        if f.labels is not None and len(f.labels) != len(f.predicted):
            return None
        predicted += f.predicted
        labels += f.labels or []
    if not carried or len(predicted) != n_images:
        return None
    skeleton = carried[0].skeleton
    assert skeleton is not None
    report = skeleton.model_copy(deep=True)
    labelled = all(f.labels is not None for f in carried)
    report.sample = summarize_sample(predicted, labels if labelled else None, len(report.model.class_names))
    report.environment.memory = [event for f in facts for event in f.memory]
    return report
