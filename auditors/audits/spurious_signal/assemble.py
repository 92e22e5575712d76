"""The merge of the spurious-signal audit: the shards' partials (`shard`) into the audit's result.

No model and no images: per region, the per-image top-q shares become the saliency evidence, which is
joined with the region's stamp and removal tests; discovery's candidates and colour casts are
corrected (Holm) and judged; the verdict, findings and artifacts follow. A single run is the one-shard
plan merged here, so it and any sharded run share this code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from auditors.audits.base import ShardMeta
from auditors.audits.context import artifact_path
from auditors.audits.partials import unpack_arrays
from auditors.audits.spurious_signal.artifacts import Drawn, Hotspots, write_artifacts
from auditors.audits.spurious_signal.discover import OUT_OF_SCOPE, judge_candidates, judge_global
from auditors.audits.spurious_signal.findings import global_finding, local_finding, write_examples
from auditors.audits.spurious_signal.regions import Thresholds, evidence
from auditors.audits.spurious_signal.shard import HOT_SCALE, settings_of
from auditors.audits.spurious_signal.verdict import AUDIT, already_found, conclude, max_enrichment
from auditors.methods.per_image_random import check_tiling
from auditors.report import Artifact, AuditResult, Finding

MAX_HOTSPOT_CLASSES = 16


def _joined(ordered: list[dict[str, Any]], key: str) -> list[Any]:
    return [v for p in ordered for v in p[key]]


def _tests(ordered: list[dict[str, Any]]) -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for p in ordered:
        for k, v in p["tests"].items():
            if k in tests:
                raise ValueError(f"test {k} was run by two shards")
            tests[k] = v
    return tests


def _region(
    i: int,
    reg: dict[str, Any],
    ordered: list[dict[str, Any]],
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    tests: dict[str, Any],
    meta: ShardMeta,
    th: Thresholds,
    top_k: int,
) -> tuple[dict[str, Any], Finding | None]:
    """A hinted region: saliency in the box from the shards' shares, then its stamp test's verdict.
    Confirmed by the stamp and removal tests, or by the stamp with saliency flagging the box."""
    out: dict[str, Any] = {"box": reg["box"], "image_index": reg["image_index"]}
    parts = [p["saliency"]["regions"][i] for p in ordered]
    positions = [q for part in parts for q in part["positions"]]
    if not positions:
        out["skipped"] = "image_index is not in the audited sample"
        return out, None
    shares = {
        m: torch.tensor([v for part in parts for v in part["shares"][m]], dtype=torch.float32)
        for m in parts[0]["shares"]
    }
    has_parts = [part["has"] for part in parts if part["positions"]]
    has = None if has_parts[0] is None else torch.tensor([v for h in has_parts for v in h], dtype=torch.bool)
    sal = evidence(
        shares,
        pred[positions],
        None if labels is None else labels[positions],
        has,
        meta.class_names,
        th,
        reg["baseline"],
        top_k,
    )
    flagged = sorted({c for m in sal["methods"].values() for c in m["flagged_classes"]})
    test = tests[f"region:{i}"]
    res = test["result"]
    out.update(sal, flagged_by_saliency=flagged, **res)
    if not reg["has_artifact"] and reg["image_index"] is not None:
        out["stamp"] = f"box content of image {reg['image_index']}"
    # Second line of evidence besides the stamp: removal beats random boxes, or saliency flags the box.
    saliency_agrees = res.get("stamp_confirmed", False) and res.get("class") in flagged
    out["confirmed"] = bool(res["confirmed"] or saliency_agrees)
    if not out["confirmed"]:
        return out, None

    def write(name: str) -> Any:
        return artifact_path(meta.out_dir, AUDIT, name)

    finding = local_finding(out, write_examples(write, f"region_{i}", test["examples"]), name=reg["name"])
    finding.evidence["enrichment"] = max_enrichment(out)
    finding.evidence["flagged_by_saliency"] = out["flagged_by_saliency"]
    return out, finding


def _discovery(
    first: dict[str, Any], tests: dict[str, Any], meta: ShardMeta, config: Any
) -> tuple[list[Finding], dict[str, Any]]:
    """Holm over the candidates and over the colour casts, the findings and the metrics block."""
    d = first["discovery"]
    settings = settings_of(config)
    ctests = [tests[f"candidate:{j}"] for j in range(len(d["candidates"]))]
    candidates, confirmed = judge_candidates(
        d["candidates"], ctests, meta.class_names, settings, lambda j: ctests[j]["removal"]
    )
    results = [tests[f"global:{c}"] for c in d["global_classes"]]
    g_cands, g_conf = judge_global(results, meta.class_names, settings)

    def write(name: str) -> Any:
        return artifact_path(meta.out_dir, AUDIT, name)

    findings = [
        local_finding(candidates[j], write_examples(write, f"discovered_{k}", ctests[j]["examples"]))
        for k, j in enumerate(confirmed)
    ]
    findings += [global_finding(g, first["height"], first["width"]) for g in g_conf]
    return findings, {
        "candidates": candidates,
        "global": g_cands,
        "content_null": d["content_null"],
        "untested_classes": d["untested_classes"],
        "out_of_scope": list(OUT_OF_SCOPE),
    }


def _pictures(
    ordered: list[dict[str, Any]],
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    conf: torch.Tensor,
    methods: list[str],
) -> tuple[Drawn, Hotspots | None]:
    arrays = [unpack_arrays(p["saliency"]["arrays"]) for p in ordered]
    drawn_parts = [a["drawn_images"] for a in arrays if "drawn_images" in a]
    height, width = ordered[0]["height"], ordered[0]["width"]
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
    if tuple(hot.shape[-2:]) != (height, width):  # thumbnails (shard.HOT_SIDE): back to input pixels,
        # so the candidate boxes drawn on them stay in the input's coordinates
        hot = torch.nn.functional.interpolate(hot[:, None], size=(height, width), mode="nearest")[:, 0]
        mean_images = torch.nn.functional.interpolate(mean_images, size=(height, width), mode="nearest")
    return drawn, Hotspots(classes, hot, mean_images)


def merge_partials(meta: ShardMeta, config: Any, partials: Sequence[dict[str, Any]]) -> AuditResult:
    """The audit's result from its shards' partials (see the module doc)."""
    ordered = check_tiling(partials)
    first = ordered[0]
    n = int(first["n"])
    if int(ordered[-1]["stop"]) != n:
        raise ValueError(f"shards cover {ordered[-1]['stop']} of {n} images")
    pred = torch.tensor(_joined(ordered, "pred"), dtype=torch.long)
    conf = torch.tensor(_joined(ordered, "confidence"), dtype=torch.float32)
    labels = None if first["labels"] is None else torch.tensor(_joined(ordered, "labels"), dtype=torch.long)
    tests = _tests(ordered)
    th = Thresholds(config.share_threshold, config.enrichment_threshold, config.min_group)
    findings: list[Finding] = []
    region_metrics: dict[str, Any] = {}
    for i, reg in enumerate(first["regions"]):
        out, finding = _region(i, reg, ordered, pred, labels, tests, meta, th, first["top_k"])
        if finding is not None:
            findings.append(finding)
        region_metrics[reg["name"]] = out
    discovery: dict[str, Any] = {"candidates": [], "global": [], "out_of_scope": list(OUT_OF_SCOPE)}
    if config.discovery:
        new, discovery = _discovery(first, tests, meta, config)
        findings += [f for f in new if not already_found(findings, f)]
    candidates = discovery["candidates"]
    flips = [r["flip"]["value"] for r in [*region_metrics.values(), *candidates] if r.get("flip")]
    metrics: dict[str, Any] = {
        "n_images": n,
        "q": config.q,
        "top_k_pixels": first["top_k"],
        "patch_size": first["patch_size"],
        "strategy": first["strategy"],
        "strategy_bias": first["strategy_bias"],
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
    drawn, hot = _pictures(ordered, pred, labels, conf, list(config.methods))
    boxes = [r["box"] if r["image_index"] is None else None for r in first["regions"]]
    artifacts: list[Artifact] = write_artifacts(
        meta.out_dir, AUDIT, meta.class_names, drawn, hot, boxes, candidates
    )
    path, rel = artifact_path(meta.out_dir, AUDIT, "candidates.json")
    path.write_text(json.dumps({"regions": region_metrics, "candidates": candidates}, indent=2))
    artifacts.append(
        Artifact(
            name="candidates",
            path=rel,
            media_type="application/json",
            description="regions and discovery candidates with their evidence",
        )
    )
    n_regions = len(first["regions"])
    return conclude(
        findings, region_metrics, discovery, metrics, artifacts, config, n, n_regions, len(meta.class_names)
    )
