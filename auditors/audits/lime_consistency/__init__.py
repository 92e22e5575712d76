"""LIME consistency: are removal-based explanations informative and stable across fills and seeds?"""

from auditors.audits.info import AuditInfo, FormField, PolicyLine

INFO = AuditInfo(
    name="lime_consistency",
    title="LIME consistency",
    checks="are explanations informative and stable across fills?",
    role="explanation",
    implementation="auditors.audits.lime_consistency.audit:LimeConsistency",
    charts="auditors.audits.lime_consistency.charts:charts",
    shardable=True,
    picks="a class-stratified sample",
    form_fields=(
        FormField("n_images", "LIME: images"),
        FormField("n_samples", "LIME: perturbations per image"),
    ),
    policy_comment=(
        "LIME consistency (an explanation caveat): removing LIME's top-25 features must change\n"
        "predictions at least twice as fast as removing 25 random ones, and the top-20 set must not\n"
        "depend on the fill colour."
    ),
    policy=(
        PolicyLine("verdict", "warn", {"equals": "pass"}),
        PolicyLine("metrics.removal.ratio_at_25", "warn", {"max": 0.5}),
        PolicyLine("metrics.fill_consistency.at_20", "warn", {"min": 0.5}),
        PolicyLine("metrics.seed_stability.spearman_mean", "warn", {"min": 0.8}),
    ),
    demo_config={"n_images": 8, "n_samples": 500},
    smoke_config={
        "n_images": 2,
        "n_samples": 32,
        "strategies": ["black"],
        "max_k": 4,
        "n_random_orders": 2,
        "n_show": 1,
    },
)
