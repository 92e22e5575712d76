"""The facts a sharded job's shards record for its merge (`occulta.jobs.facts`): the carrier's shares of
the sample tile it for every plan, the gathered sample summary is the single run's, and a gap, an
overlap or a carrier that sees only part of the sample makes the merge load the model instead."""

from __future__ import annotations

import pytest

from auditors.audits.ranges import block_ranges, even_ranges
from auditors.report import DatasetDescription, Environment, ModelDescription, Report
from auditors.sample_summary import summarize_sample
from occulta.jobs.facts import ShardFacts, carrier, facts_range, gather

CLASSES = ["a", "b", "c"]
PREDICTED = [0, 1, 2, 2, 1, 0, 0, 1, 2, 1, 1]
LABELS = [0, 1, 2, 1, 1, 0, 2, 1, 2, 0, 1]


def _skeleton() -> Report:
    return Report(
        model=ModelDescription(
            arch="occulta_resnet_tiny",
            num_classes=3,
            class_names=CLASSES,
            input_size=[3, 32, 32],
            mean=[0.5] * 3,
            std=[0.25] * 3,
            parameters=10,
            weights_sha256="0" * 64,
            card="card.json",
        ),
        dataset=DatasetDescription(
            ref="synthetic:shapes",
            n_images=len(PREDICTED),
            n_classes=3,
            class_names=CLASSES,
            image_size=[32, 32],
            labelled=True,
            sample_seed=3,
        ),
        seed=3,
        environment=Environment(device="cpu"),
    )


def _facts(spans: list[range], *, labelled: bool = True, memory: tuple[str, ...] = ()) -> list[ShardFacts]:
    return [
        ShardFacts(
            start=s.start,
            stop=s.stop,
            predicted=PREDICTED[s.start : s.stop],
            labels=LABELS[s.start : s.stop] if labelled else None,
            skeleton=_skeleton(),
            memory=list(memory),
        )
        for s in spans
    ]


@pytest.mark.parametrize("n_images", [1, 7, 11, 256])
@pytest.mark.parametrize("positions", [1, 5, 8, 11])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
def test_the_shares_of_an_all_audit_tile_the_sample_for_every_plan(
    n_images: int, positions: int, n_shards: int
) -> None:
    positions = min(positions, n_images)
    for plan in (even_ranges(positions, n_shards), block_ranges(positions, n_shards, 4)):
        shares = [facts_range("all", r, positions, n_images) for r in plan]
        assert [i for s in shares for i in s] == list(range(n_images)), plan


def test_a_range_audit_predicts_its_own_images() -> None:
    assert facts_range("range", range(64, 128), 256, 256) == range(64, 128)


def test_the_carrier_is_the_first_sharded_audit_by_name() -> None:
    assert carrier(["spurious_signal", "lime_consistency", "sis"]) == "lime_consistency"
    assert carrier([]) is None


def test_gathered_facts_give_the_single_run_sample_summary_and_every_memory_event() -> None:
    spans = [range(0, 4), range(4, 4), range(4, 9), range(9, 11)]
    quiet = ShardFacts(memory=["other audit: batch halved to 8"])  # a shard of another audit
    report = gather([*reversed(_facts(spans, memory=("halved",))), quiet], len(PREDICTED))
    assert report is not None
    assert report.sample == summarize_sample(PREDICTED, LABELS, len(CLASSES))
    assert report.environment.memory == ["halved"] * 4 + ["other audit: batch halved to 8"]
    assert report.audits == [] and report.model == _skeleton().model


def test_an_unlabelled_sample_has_no_accuracy() -> None:
    report = gather(_facts([range(0, 6), range(6, 11)], labelled=False), len(PREDICTED))
    assert report is not None and report.sample is not None
    assert report.sample.accuracy is None
    assert report.sample == summarize_sample(PREDICTED, None, len(CLASSES))


@pytest.mark.parametrize(
    "spans",
    [
        [range(0, 4), range(5, 11)],  # a lost share
        [range(0, 6), range(4, 11)],  # an overlap
        [range(0, 4), range(4, 9)],  # a "range" carrier that audits fewer images than the sample
        [],  # no carrier at all
    ],
)
def test_facts_that_do_not_cover_the_sample_exactly_once_are_refused(spans: list[range]) -> None:
    assert gather(_facts(spans), len(PREDICTED)) is None


def test_a_share_whose_predictions_do_not_match_its_range_is_refused() -> None:
    facts = _facts([range(0, 6), range(6, 11)])
    facts[1].predicted = facts[1].predicted[:-1]
    assert gather(facts, len(PREDICTED)) is None
