"""Missingness bias: does removing patches push predictions toward classes the fill itself evokes?"""

from auditors.audits.base import AuditInfo, PolicyLine

INFO = AuditInfo(
    name="missingness_bias",
    title="Missingness bias",
    checks="does the model react to how a region is removed?",
    implementation="auditors.audits.missingness_bias.audit:MissingnessBias",
    shardable=True,
    policy_comment=(
        "Missingness bias: at half the patches removed, class entropy may fall at most 1 nat and no class\n"
        "may swallow the predictions (attractor classes)."
    ),
    policy=(
        PolicyLine("verdict", "error", {"in": ["pass", "inconclusive"]}),
        PolicyLine("metrics.worst.entropy_drop_at_half", "error", {"max": 1.0}),
        PolicyLine("metrics.worst.max_share_at_half", "warn", {"max": 0.5}),
        PolicyLine("metrics.best.auc", "warn", {"min": 0.5}),
    ),
    # docs/audits.md's 10x attractor ratio is calibrated on 1000 ImageNet classes (clean shares ~0.1%);
    # with four classes at ~25% each no class could ever reach 10x, so the demo asks for 2.5x.
    demo_config={"class_share_ratio": 2.5},
    smoke_config={"strategies": ["black", "mean"], "fractions": [0.0, 0.5]},
)
