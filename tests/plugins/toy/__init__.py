"""The toy audit: proof that a fifth audit is one package plus one registration.

It checks that no class takes more than `max_share` of the model's predictions. Its metadata lives
here (torch-free, so the API and the dashboard read it); its computation in `audit.py`.
"""

from auditors.audits.info import AuditInfo, FormField, PolicyLine

INFO = AuditInfo(
    name="toy",
    title="Toy majority share",
    checks="does one class take most of the predictions?",
    implementation="tests.plugins.toy.audit:ToyAudit",
    charts="tests.plugins.toy.charts:charts",
    shardable=True,
    form_fields=(FormField("n_images", "Toy: images"),),
    policy_comment="Toy: no class takes more than half of the predictions.",
    policy=(PolicyLine("metrics.majority_share", "error", {"max": 0.5}),),
    demo_config={"n_images": 16},
    smoke_config={"n_images": 8},
)
