"""Spurious signal: does the model use a watermark, a ruler or a border instead of the object?"""

from auditors.audits.info import AuditInfo, FormField, PolicyLine

INFO = AuditInfo(
    name="spurious_signal",
    title="Spurious signal",
    checks="is a watermark, border or stamp deciding the class?",
    implementation="auditors.audits.spurious_signal.audit:SpuriousSignal",
    charts="auditors.audits.spurious_signal.charts:charts",
    shardable=True,
    picks="a seeded random sample, classes at their frequency in the data",
    form_fields=(FormField("n_images", "Spurious signal: images"),),
    policy_comment=(
        "Spurious signals: no confirmed shortcut region; saliency enrichment and stamp flip rates stay low."
    ),
    policy=(
        PolicyLine("verdict", "error", {"equals": "pass"}),
        PolicyLine("metrics.n_confirmed", "error", {"max": 0}),
        PolicyLine("metrics.max_enrichment", "warn", {"max": 10}),
        PolicyLine("metrics.max_flip_rate", "warn", {"max": 0.5}),
    ),
    demo_config={"n_images": 128, "n_samples": 8, "steps": 16},
    smoke_config={
        "n_images": 8,
        "methods": ["gradient"],
        "discovery": False,
        "n_random_boxes": 2,
        "n_overlays": 1,
    },
)
