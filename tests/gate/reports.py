"""Reports built directly from the pydantic schema, so gate tests need no torch and no audit run."""

from __future__ import annotations

from typing import Any

from auditors.report import (
    AuditResult,
    DatasetDescription,
    Environment,
    Finding,
    ModelDescription,
    Report,
)


def make_report(**overrides: Any) -> Report:
    """Two audits: missingness bias passes, LIME consistency fails; metrics nested like the audits'."""
    audits = overrides.pop(
        "audits",
        [
            AuditResult(
                name="missingness_bias",
                verdict="pass",
                summary="Predictions stay spread over classes when half the patches are removed.",
                metrics={
                    "worst": {"strategy": "black", "entropy_drop_at_half": 0.4},
                    "strategies": [{"name": "black", "auc": 0.61}, {"name": "mean", "auc": 0.72}],
                },
                findings=[Finding(kind="attractor_class", summary="class b grows", class_name="b")],
            ),
            AuditResult(
                name="lime_consistency",
                verdict="fail",
                summary="Explanations are unreliable under black fill.",
                metrics={"removal": {"own_at_25": 0.7, "random_at_25": 0.8}},
            ),
        ],
    )
    report = Report(
        model=ModelDescription(
            arch="tiny_resnet",
            num_classes=2,
            class_names=["a", "b"],
            input_size=[3, 32, 32],
            mean=[0.5] * 3,
            std=[0.25] * 3,
        ),
        dataset=DatasetDescription(
            ref="synthetic:corner",
            n_images=64,
            n_classes=2,
            class_names=["a", "b"],
            image_size=[32, 32],
            labelled=True,
            sample_seed=0,
        ),
        seed=0,
        environment=Environment(device="cpu"),
        audits=audits,
        **overrides,
    )
    return report.finalize()


# Metrics shaped like each audit's real output (the integration battery checks the real shapes), with
# values a healthy model produces.
HEALTHY_METRICS: dict[str, dict[str, Any]] = {
    "missingness_bias": {
        "best": {"strategy": "layer_mask", "auc": 0.74, "entropy_drop_at_half": 0.003},
        "worst": {
            "strategy": "black",
            "auc": 0.6,
            "entropy_drop_at_half": 0.3,
            "entropy_drop_share_at_half": 0.08,
            "max_share_at_half": 0.35,
        },
    },
    "lime_consistency": {
        "removal": {"own_at_25": 0.1, "random_at_25": 0.5, "ratio_at_25": 0.2},
        "fill_consistency": {"at_20": 0.7},
        "seed_stability": {"spearman_mean": 0.9},
    },
    "sis": {"share_confident_sis_le_5pct": 0.0, "subset_5pct": {"backselect": {"accuracy": 0.3}}},
    "spurious_signal": {"n_confirmed": 0, "max_enrichment": 1.5, "max_flip_rate": 0.05},
}


def healthy_report(audits: list[str]) -> Report:
    """A report of exactly these audits, every one passing with healthy metrics."""
    results = [
        AuditResult(name=name, verdict="pass", summary="healthy", metrics=HEALTHY_METRICS[name])
        for name in audits
    ]
    return make_report(audits=results)
