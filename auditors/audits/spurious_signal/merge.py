"""The merge of the spurious-signal audit: the shards' partials (`shard`) into its judgement and files.

No model and no images: per region, the per-image top-q shares become the saliency evidence, which is
joined with the region's stamp and removal tests; discovery's candidates and colour casts are
corrected (Holm) and judged; the verdict and findings follow (`judge`), then the overlays, hotspot
maps, example images and the candidates file (`draw`). A single run is the one-shard plan merged
here, so it and any sharded run share this code.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from auditors.audits.base import ShardMeta, Shards
from auditors.audits.context import artifact_path, artifact_rel
from auditors.audits.partials import unpack_arrays
from auditors.audits.spurious_signal.artifacts import Drawn, Hotspots, write_artifacts
from auditors.audits.spurious_signal.box_saliency import Thresholds, evidence
from auditors.audits.spurious_signal.boxes import inside
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.discover import OUT_OF_SCOPE, judge_candidates, judge_global
from auditors.audits.spurious_signal.findings import (
    draw_examples,
    example_entries,
    global_finding,
    local_finding,
)
from auditors.audits.spurious_signal.global_shift import MIN_Z as COLOUR_MIN_Z
from auditors.audits.spurious_signal.located import judge_located
from auditors.audits.spurious_signal.lowlevel import judge_lowlevel
from auditors.audits.spurious_signal.notes import (
    located_finding,
    lowlevel_finding,
    pattern_finding,
    sensitivity_finding,
)
from auditors.audits.spurious_signal.pattern import judge_patterns
from auditors.audits.spurious_signal.saliency_pass import HOT_SCALE
from auditors.audits.spurious_signal.shard import RegionSummary, SpuriousPartial, settings_of
from auditors.audits.spurious_signal.verdict import (
    AUDIT,
    SpuriousJudgement,
    already_found,
    conclude,
    max_enrichment,
    without_covered_patterns,
)
from auditors.report import Artifact, Finding

MAX_HOTSPOT_CLASSES = 16
Examples = dict[str, list[dict[str, Any]]]  # example tag -> `findings.example_data`, drawn by `draw`


def _rel(name: str) -> str:
    return artifact_rel(AUDIT, name)


def _tests(parts: list[SpuriousPartial]) -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for p in parts:
        for k, v in p.tests.items():
            if k in tests:
                raise ValueError(f"test {k} was run by two shards")
            tests[k] = v
    return tests


def _region(
    i: int,
    reg: RegionSummary,
    parts: list[SpuriousPartial],
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    tests: dict[str, Any],
    meta: ShardMeta,
    th: Thresholds,
    top_k: int,
    examples: Examples,
) -> tuple[dict[str, Any], Finding | None]:
    """A hinted region: saliency in the box from the shards' shares, then its stamp test's verdict.
    Confirmed by the stamp and removal tests, or by the stamp with saliency flagging the box."""
    out: dict[str, Any] = {"box": reg.box, "image_index": reg.image_index}
    sal_parts = [p.saliency.regions[i] for p in parts]
    positions = [q for part in sal_parts for q in part.positions]
    if not positions:
        out["skipped"] = "image_index is not in the audited sample"
        return out, None
    shares = {
        m: torch.tensor([v for part in sal_parts for v in part.shares[m]], dtype=torch.float32)
        for m in sal_parts[0].shares
    }
    has_parts = [part.has for part in sal_parts if part.positions]
    first_has = has_parts[0]
    has = (
        None
        if first_has is None
        else torch.tensor([v for h in has_parts for v in (h or [])], dtype=torch.bool)
    )
    sal = evidence(
        shares,
        pred[positions],
        None if labels is None else labels[positions],
        has,
        meta.class_names,
        th,
        reg.baseline,
        top_k,
    )
    flagged = sorted({c for m in sal["methods"].values() for c in m["flagged_classes"]})
    test = tests[f"region:{i}"]
    res = test["result"]
    out.update(sal, flagged_by_saliency=flagged, **res)
    if not reg.has_artifact and reg.image_index is not None:
        out["stamp"] = f"box content of image {reg.image_index}"
    # Second line of evidence besides the stamp: removal beats random boxes, or saliency flags the box.
    saliency_agrees = res.get("stamp_confirmed", False) and res.get("class") in flagged
    out["confirmed"] = bool(res["confirmed"] or saliency_agrees)
    if not out["confirmed"]:
        return out, None
    examples[f"region_{i}"] = test["examples"]
    finding = local_finding(out, example_entries(_rel, f"region_{i}", test["examples"]), name=reg.name)
    finding.evidence["enrichment"] = max_enrichment(out)
    finding.evidence["flagged_by_saliency"] = out["flagged_by_saliency"]
    return out, finding


def _discovery(
    first: SpuriousPartial,
    tests: dict[str, Any],
    meta: ShardMeta,
    config: SpuriousConfig,
    examples: Examples,
) -> tuple[list[Finding], dict[str, Any]]:
    """Holm over the candidates and over the colour casts, the findings and the metrics block."""
    d = first.discovery
    if d is None:
        raise ValueError(
            "the shards ran without discovery, the config asks for it: rerun them with one config"
        )
    settings = settings_of(config)
    ctests = [tests[f"candidate:{j}"] for j in range(len(d.candidates))]
    candidates, confirmed = judge_candidates(
        d.candidates, ctests, meta.class_names, settings, lambda j: ctests[j]["removal"]
    )
    mtests = [tests[f"motif:{j}"] for j in range(len(d.motifs))]
    moving, m_confirmed = judge_candidates(
        d.motifs, mtests, meta.class_names, settings, lambda j: mtests[j]["removal"]
    )
    for cand, summary in zip(moving, d.motifs, strict=True):
        cand |= {k: summary[k] for k in ("placement", "mark_size", "positions_heat_map")}
        cand["correction"] = f"holm over {len(d.motifs)} moving marks"
    results = [tests[f"global:{c}"] for c in d.global_classes]
    g_cands, g_conf = judge_global(results, meta.class_names, settings)
    low = tests.get("lowlevel:0") or {"results": [], "screened": 0}
    l_cands, l_conf = judge_lowlevel(low["results"], meta.class_names, config.alpha, config.min_flip)
    pat = tests.get("pattern:0") or {"results": [], "screened": 0}
    p_cands, p_conf = judge_patterns(pat["results"], meta.class_names, config.alpha, config.min_flip)
    loc = tests.get("located:0") or {"results": [], "screened": 0}
    o_cands, o_conf = judge_located(loc["results"], meta.class_names, config.alpha, config.min_flip)
    findings = []
    for k, j in enumerate(confirmed):
        examples[f"discovered_{k}"] = ctests[j]["examples"]
        findings.append(
            local_finding(candidates[j], example_entries(_rel, f"discovered_{k}", ctests[j]["examples"]))
        )
    for k, j in enumerate(m_confirmed):
        examples[f"moving_{k}"] = mtests[j]["examples"]
        findings.append(local_finding(moving[j], example_entries(_rel, f"moving_{k}", mtests[j]["examples"])))
    findings += [global_finding(g, first.height, first.width) for g in g_conf]
    findings += [lowlevel_finding(r, first.height, first.width) for r in l_conf]
    for k, r in enumerate(p_conf):
        data = r.pop("examples", None) or []
        examples[f"pattern_{k}"] = data
        findings.append(
            pattern_finding(r, first.height, first.width, example_entries(_rel, f"pattern_{k}", data))
        )
    # A located mark that a finding of its class already explains is that signal, found twice: it
    # stays in the metrics, marked, and the verdict does not rest on it (`verdict._shown`).
    for r in o_conf:
        r["explained"] = _explained(r, findings)
    o_conf = [r for r in o_conf if not r["explained"]]
    for k, r in enumerate(o_conf):
        data = r.pop("examples", None) or []
        examples[f"located_{k}"] = data
        findings.append(
            located_finding(r, first.height, first.width, example_entries(_rel, f"located_{k}", data))
        )
    for r in [*p_cands, *o_cands]:  # the pictures of signals that were not confirmed are not drawn
        r.pop("examples", None)
    # Signals the model reacts to without depending on them: notes, not failures (`severity`).
    notes = [*candidates, *moving, *g_cands, *l_cands, *p_cands]
    notes = [r for r in notes if r.get("severity") == "sensitivity"]
    notes_found = [sensitivity_finding(r, first.height, first.width) for r in notes]
    located_notes = [r for r in o_cands if r.get("severity") == "sensitivity"]
    for r in located_notes:
        r["explained"] = _explained(r, findings + notes_found)
    located_notes = [r for r in located_notes if not r["explained"]]
    findings += notes_found + [sensitivity_finding(r, first.height, first.width) for r in located_notes]
    return findings, {
        "candidates": candidates,
        "moving": moving,
        "global": g_cands,
        "lowlevel": l_cands,
        "lowlevel_screened": low["screened"],
        "patterns": p_cands,
        "patterns_screened": pat["screened"],
        "located": o_cands,
        "located_screened": loc["screened"],
        "content_null": d.content_null,
        "colour_screen": {
            "z": {meta.class_names[c]: z for c, z in d.colour_z.items()},
            "min_z": COLOUR_MIN_Z,
            # per class, the mean RGB shift a cast on the whole class must reach to be tested at this
            # sample (on a fraction f of the class, 1/f times that on its images)
            "resolution": {meta.class_names[c]: r for c, r in d.colour_resolution.items()},
        },
        "untested_classes": d.untested_classes,
        "out_of_scope": list(OUT_OF_SCOPE),
    }


def _explained(r: dict[str, Any], findings: list[Finding]) -> bool:
    """Whether a located box is a signal another finding of its class already reports: a region
    holding at least half of it (the same mark, found from its pixels), or a whole-image signal (a
    class pattern, a cast or a statistic shows most at some place, and the gradients single it out)."""
    for f in findings:
        if f.class_name != r["class"]:
            continue
        if f.evidence.get("scope") == "image" or f.kind == "global_shortcut":
            return True
        if f.box is not None and inside(r["box"], f.box) >= 0.5:
            return True
    return False


def _pictures(parts: list[SpuriousPartial], methods: list[str]) -> tuple[Drawn, Hotspots | None]:
    pred, conf, labels = _predictions(parts)
    arrays = [unpack_arrays(p.saliency.arrays) for p in parts]
    drawn_parts = [a["drawn_images"] for a in arrays if "drawn_images" in a]
    height, width = parts[0].height, parts[0].width
    images = (
        torch.from_numpy(np.concatenate(drawn_parts)).float() / 255
        if drawn_parts
        else torch.zeros(0, 3, height, width)
    )
    d = int(images.shape[0])
    maps = {
        m: torch.from_numpy(
            np.concatenate([a[f"map_{m}"] for a in arrays if f"map_{m}" in a]).astype(np.float32)
        )
        for m in methods
        if d
    }
    drawn = Drawn(images, maps, pred[:d], None if labels is None else labels[:d], conf[:d])
    sums: dict[int, list[Any]] = {}
    for a in arrays:
        if "hot_classes" not in a:
            continue
        for row, c in enumerate(a["hot_classes"].tolist()):
            entry = sums.setdefault(c, [0, 0, 0])
            entry[0] += int(a["hot_count"][row])
            entry[1] = entry[1] + a["hot_sum"][row]
            entry[2] = entry[2] + a["hot_pixels"][row]
    if not sums:
        return drawn, None
    # The classes with the most images, at most MAX_HOTSPOT_CLASSES rows (a 1000-class model's figure
    # would be unreadable), shown in class order.
    classes = sorted(sorted(sums, key=lambda c: (-sums[c][0], c))[:MAX_HOTSPOT_CLASSES])
    hot = torch.stack([torch.from_numpy(sums[c][1] / sums[c][0] / HOT_SCALE).float() for c in classes])
    mean_images = torch.stack([torch.from_numpy(sums[c][2] / sums[c][0] / 255).float() for c in classes])
    if tuple(hot.shape[-2:]) != (height, width):  # thumbnails (saliency_pass.HOT_SIDE): back to input pixels,
        # so the candidate boxes drawn on them stay in the input's coordinates
        hot = torch.nn.functional.interpolate(hot[:, None], size=(height, width), mode="nearest")[:, 0]
        mean_images = torch.nn.functional.interpolate(mean_images, size=(height, width), mode="nearest")
    return drawn, Hotspots(classes, hot, mean_images)


def _predictions(parts: list[SpuriousPartial]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The clean predictions, confidences and labels of every position, in position order."""
    pred = torch.tensor([v for p in parts for v in p.pred], dtype=torch.long)
    conf = torch.tensor([v for p in parts for v in p.confidence], dtype=torch.float32)
    labels = (
        None
        if parts[0].labels is None
        else torch.tensor([v for p in parts for v in p.labels or []], dtype=torch.long)
    )
    return pred, conf, labels


def judge(meta: ShardMeta, config: SpuriousConfig, shards: Shards[SpuriousPartial]) -> SpuriousJudgement:
    """The verdict, findings and metrics from the shards' partials (see the module doc)."""
    parts = shards.parts
    first = parts[0]
    n = sum(len(r) for r in shards.ranges)
    pred, _, labels = _predictions(parts)
    tests = _tests(parts)
    th = Thresholds(config.share_threshold, config.enrichment_threshold, config.min_group)
    findings: list[Finding] = []
    examples: Examples = {}
    region_metrics: dict[str, Any] = {}
    for i, reg in enumerate(first.regions):
        out, finding = _region(i, reg, parts, pred, labels, tests, meta, th, first.top_k, examples)
        if finding is not None:
            findings.append(finding)
        region_metrics[reg.name] = out
    discovery: dict[str, Any] = {"candidates": [], "global": [], "out_of_scope": list(OUT_OF_SCOPE)}
    if config.discovery:
        new, discovery = _discovery(first, tests, meta, config, examples)
        findings = without_covered_patterns(findings + [f for f in new if not already_found(findings, f)])
    candidates = discovery["candidates"]
    flips = [r["flip"]["value"] for r in [*region_metrics.values(), *candidates] if r.get("flip")]
    metrics: dict[str, Any] = {
        "n_images": n,
        "q": config.q,
        "top_k_pixels": first.top_k,
        "patch_size": first.patch_size,
        "strategy": first.strategy,
        "strategy_bias": first.strategy_bias,
        "methods": config.methods,
        "regions": region_metrics,
        **discovery,
        "n_confirmed": sum(f.kind in ("spurious_region", "global_shortcut") for f in findings),
        "max_flip_rate": max(flips, default=0.0),
        "max_enrichment": max([max_enrichment(r) for r in region_metrics.values()], default=0.0),
    }
    if "leakage:0" in tests:
        leak = tests["leakage:0"]
        metrics["mask_leakage"] = leak
        worst = max(leak, key=lambda s: leak[s].get("leak_vs_native", 0.0))
        if leak[worst].get("leak_vs_native", 0.0) >= 0.2:
            findings.append(
                Finding(
                    kind="mask_shape_leakage",
                    summary=f"with the object removed, {worst} keeps "
                    f"{leak[worst]['leak_vs_native']:.0%} more accuracy than native masking: "
                    "the hole's shape gives the class away",
                    evidence=leak[worst],
                )
            )
    return conclude(
        findings,
        region_metrics,
        discovery,
        metrics,
        config,
        n,
        len(first.regions),
        len(meta.class_names),
        examples,
    )


def draw(
    meta: ShardMeta, config: SpuriousConfig, shards: Shards[SpuriousPartial], judgement: SpuriousJudgement
) -> list[Artifact]:
    """Overlays, hotspot maps and raw maps from what the shards carried, the confirmed findings'
    example images, and the regions and candidates with their evidence as JSON."""
    parts = shards.parts
    metrics = judgement.metrics
    drawn, hot = _pictures(parts, list(config.methods))
    boxes = [r.box if r.image_index is None else None for r in parts[0].regions]
    candidates = metrics["candidates"]
    artifacts: list[Artifact] = write_artifacts(
        meta.out_dir, AUDIT, meta.class_names, drawn, hot, boxes, candidates
    )

    def write(name: str) -> Any:
        return artifact_path(meta.out_dir, AUDIT, name)

    for tag, data in judgement.examples.items():
        draw_examples(write, tag, data)
    path, rel = write("candidates.json")
    path.write_text(json.dumps({"regions": metrics["regions"], "candidates": candidates}, indent=2))
    artifacts.append(
        Artifact(
            name="candidates",
            path=rel,
            media_type="application/json",
            description="regions and discovery candidates with their evidence",
        )
    )
    return artifacts
