"""SIS / overinterpretation: is the model confident from a few meaningless pixels?"""

from auditors.audits.info import AuditInfo, FormField, PolicyLine

INFO = AuditInfo(
    name="sis",
    title="Overinterpretation (SIS)",
    checks="confident from a few meaningless pixels?",
    implementation="auditors.audits.sis.audit:SIS",
    charts="auditors.audits.sis.charts:charts",
    shardable=True,
    picks="the confident images, class-stratified",
    form_fields=(FormField("n_images", "SIS: images"),),
    policy_comment="SIS / overinterpretation: few confident images should rest on <= 5% of the pixels.",
    policy=(
        PolicyLine("verdict", "warn", {"in": ["pass", "inconclusive"]}),
        PolicyLine("metrics.share_confident_sis_le_5pct", "error", {"max": 0.2}),
        PolicyLine("metrics.subset_5pct.backselect.accuracy", "warn", {"max": 0.5}),
    ),
    demo_config={"n_images": 6},
    # Batches of 2 rows, so the contract test's plan has several shards.
    smoke_config={"n_images": 6, "method": "gradient", "gradient_k": 64, "n_show": 1, "batch_rows": 2},
)
