"""The toy audit: proof that a fifth audit is one package plus one registration.

It checks that no class takes more than `max_share` of the model's predictions. Its metadata lives
here (torch-free, so the API and the dashboard read it), its settings in `config.py` (torch-free,
so the API validates them without torch), its computation in `audit.py` (hooks only).
"""

from auditors.audits.info import AuditInfo, BudgetKnob, FormField, PolicyLine

INFO = AuditInfo(
    name="toy",
    title="Toy majority share",
    checks="does one class take most of the predictions?",
    implementation="tests.plugins.toy.audit:ToyAudit",
    config="tests.plugins.toy.config:ToyConfig",
    charts="tests.plugins.toy.charts:charts",
    shardable=True,
    picks="a class-stratified sample",
    form_fields=(FormField("n_images", "Toy: images"),),
    budget=(BudgetKnob("n_images", 8),),
    policy_comment="Toy: no class takes more than half of the predictions.",
    policy=(PolicyLine("metrics.majority_share", "error", {"max": 0.5}),),
    demo_config={"n_images": 16},
    smoke_config={"n_images": 8},
)
