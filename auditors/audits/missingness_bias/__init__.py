"""Missingness bias: does removing patches push predictions toward classes the fill itself evokes?"""

from auditors.audits.info import AuditInfo, PolicyLine

INFO = AuditInfo(
    name="missingness_bias",
    title="Missingness bias",
    checks="does the model react to how a region is removed?",
    implementation="auditors.audits.missingness_bias.audit:MissingnessBias",
    charts="auditors.audits.missingness_bias.charts:charts",
    shardable=True,
    picks="every image of the sample",
    role="explanation",
    policy_comment=(
        "Missingness bias (an explanation caveat): at half the patches removed, class entropy may fall at\n"
        "most 20% of ln K and no class may swallow the predictions (attractor classes)."
    ),
    policy=(
        PolicyLine("verdict", "warn", {"in": ["pass", "inconclusive"]}),
        PolicyLine("metrics.worst.entropy_drop_share_at_half", "warn", {"max": 0.2}),
        PolicyLine("metrics.worst.max_share_at_half", "warn", {"max": 0.5}),
        PolicyLine("metrics.best.auc", "warn", {"min": 0.5}),
    ),
    smoke_config={"strategies": ["black", "mean"], "fractions": [0.0, 0.5]},
)
