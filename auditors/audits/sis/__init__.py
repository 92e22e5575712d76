"""SIS / overinterpretation: is the model confident from a few meaningless pixels?"""

from auditors.audits.info import AuditInfo, BudgetKnob, FormField, PolicyLine

INFO = AuditInfo(
    name="sis",
    title="Overinterpretation (SIS)",
    checks="confident from a few meaningless pixels?",
    implementation="auditors.audits.sis.audit:SIS",
    config="auditors.audits.sis.config:SISConfig",
    charts="auditors.audits.sis.charts:charts",
    shardable=True,
    # Overinterpretation is a property of nearly every trained model (Carter et al. 2021: all their
    # CIFAR-10 models), not a shortcut: on the demo's task the clean control's share is 0.92 and the
    # planted CNN's 0.81. It warns beside the model verdict instead of failing it.
    role="warning",
    picks="the confident images, class-stratified",
    budget=(BudgetKnob("n_images", 1),),
    form_fields=(FormField("n_images", "SIS: images"),),
    policy_comment="SIS / overinterpretation: few confident images should rest on <= 5% of the pixels.",
    policy=(
        PolicyLine("verdict", "warn", {"in": ["pass", "inconclusive"]}),
        PolicyLine("metrics.share_confident_sis_le_5pct", "warn", {"max": 0.2}),
        PolicyLine("metrics.subset_5pct.backselect.accuracy", "warn", {"max": 0.5}),
    ),
    # Batches of 2 rows, so the contract test's plan has several shards.
    smoke_config={"n_images": 6, "method": "gradient", "gradient_k": 64, "n_show": 1, "batch_rows": 2},
)
