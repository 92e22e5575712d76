"""The hostile-input corpus: requests an attacker or a broken client sends, each of which the API must
refuse with a clean 4xx in the error shape, leaving no row, no object and no temp file behind.

A case is data (method, path, body builder) so the same corpus can be replayed against any server.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NUL = "\x00"
LONE = "\ud800"
BIG_INTS = [2**31, 2**63, -(2**63) - 1, 2**64, 10**30, -1]


@dataclass
class Ctx:
    """Ids of rows the caller owns, so a hostile field is the only thing wrong with a request."""

    model_id: str
    dataset_id: str
    audit_id: str
    card: bytes
    weights: bytes


@dataclass
class Case:
    id: str
    method: str
    path: str | Callable[[Ctx], str]
    request: Callable[[Ctx], dict[str, Any]] = field(default=lambda ctx: {})
    status: tuple[int, ...] = ()  # empty: any 4xx

    def url(self, ctx: Ctx) -> str:
        return self.path(ctx) if callable(self.path) else self.path


def raw_json(text: str) -> dict[str, Any]:
    """A body sent byte for byte (json= would re-encode escapes and refuse NaN)."""
    return {"content": text.encode("utf-8", "surrogatepass"), "headers": {"content-type": "application/json"}}


def audit_body(ctx: Ctx, **over: Any) -> dict[str, Any]:
    return {
        "model_id": ctx.model_id,
        "dataset_id": ctx.dataset_id,
        "audits": ["test_noop"],
        "config": {"test_noop": {"threshold": 0.2}},
        "seed": 1,
    } | over


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


def _audit_json(**over: Any) -> Callable[[Ctx], dict[str, Any]]:
    return lambda ctx: raw_json(_dumps(audit_body(ctx, **over)))


def _card(ctx: Ctx, text: str | bytes) -> dict[str, Any]:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return {
        "files": {
            "card": ("card.yaml", raw, "application/yaml"),
            "weights": ("w.safetensors", ctx.weights, "application/octet-stream"),
        }
    }


def _card_with(**over: Any) -> Callable[[Ctx], dict[str, Any]]:
    def build(ctx: Ctx) -> dict[str, Any]:
        card = json.loads(ctx.card) | over
        return _card(ctx, _dumps(card))

    return build


def _card_text(text: str | bytes) -> Callable[[Ctx], dict[str, Any]]:
    return lambda ctx: _card(ctx, text)


def alias_bomb(levels: int, width: int = 9) -> str:
    """The billion-laughs card: `levels` of aliases, each `width` times the one before."""
    lines = ["arch: occulta_resnet_tiny", "input_size: [3, 32, 32]", "a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"class_names: *a{levels}")
    return "\n".join(lines) + "\n"


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header that declares a huge image, with a tiny (wrong) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _paths() -> list[tuple[str, Callable[[str], str]]]:
    return [
        ("model", lambda v: f"/v1/models/{v}"),
        ("dataset", lambda v: f"/v1/datasets/{v}"),
        ("audit", lambda v: f"/v1/audits/{v}"),
        ("report", lambda v: f"/v1/audits/{v}/report"),
        ("report_md", lambda v: f"/v1/audits/{v}/report.md"),
    ]


def build_corpus() -> list[Case]:
    cases: list[Case] = []

    # 1. Integers past the columns they are stored in.
    for name in ("seed", "samples"):
        for value in BIG_INTS:
            cases.append(
                Case(f"int-{name}-{value}", "POST", "/v1/audits", _audit_json(**{name: value}), (422,))
            )
    cases.append(Case("int-limit-huge", "GET", "/v1/audits?limit=9223372036854775808", status=(422,)))
    cases.append(
        Case(
            "int-5000-digits",
            "POST",
            "/v1/audits",
            lambda ctx: raw_json(_dumps(audit_body(ctx))[:-1] + ', "seed": ' + "9" * 5000 + "}"),
        )
    )

    # 2. NUL and lone surrogates in ids, queries, cursors, names and body fields.
    for bad_name, bad in (("nul", NUL), ("surrogate", LONE)):
        for what, make in _paths():
            quoted = "%00" if bad == NUL else "%ED%A0%80"
            cases.append(Case(f"{bad_name}-path-{what}", "GET", make(f"x{quoted}y")))
        cases.append(
            Case(f"{bad_name}-delete-model", "DELETE", f"/v1/models/x{'%00' if bad == NUL else '%ED%A0%80'}")
        )
        for param in ("status", "model_id", "verdict", "cursor"):
            enc = "%00" if bad == NUL else "%ED%A0%80"
            cases.append(Case(f"{bad_name}-query-{param}", "GET", f"/v1/audits?{param}=a{enc}b"))
        for fld in ("model_id", "dataset_id"):
            cases.append(
                Case(f"{bad_name}-audit-{fld}", "POST", "/v1/audits", _audit_json(**{fld: f"x{bad}"}))
            )
        cases.append(Case(f"{bad_name}-audit-name", "POST", "/v1/audits", _audit_json(audits=[f"a{bad}"])))
        cases.append(
            Case(
                f"{bad_name}-audit-config-key",
                "POST",
                "/v1/audits",
                _audit_json(config={"test_noop": {f"k{bad}": 1}}),
            )
        )
        cases.append(
            Case(
                f"{bad_name}-audit-config-value",
                "POST",
                "/v1/audits",
                _audit_json(config={"test_noop": {"threshold": f"v{bad}"}}),
            )
        )
        cases.append(
            Case(
                f"{bad_name}-dataset-ref",
                "POST",
                "/v1/datasets",
                lambda ctx, b=bad: raw_json(_dumps({"ref": f"synthetic:shapes{b}"})),
            )
        )
        cases.append(
            Case(
                f"{bad_name}-key-name",
                "POST",
                "/v1/keys",
                lambda ctx, b=bad: raw_json(_dumps({"name": f"ci{b}"})),
            )
        )
        cases.append(
            Case(
                f"{bad_name}-gate-audit",
                "POST",
                "/v1/gate",
                lambda ctx, b=bad: raw_json(_dumps({"audit_id": f"aud{b}", "policy": "assertions: {}"})),
            )
        )
        cases.append(
            Case(
                f"{bad_name}-gate-policy",
                "POST",
                "/v1/gate",
                lambda ctx, b=bad: raw_json(
                    _dumps({"audit_id": ctx.audit_id, "policy": f"assertions:\n  x{b}: [error]"})
                ),
            )
        )
        cases.append(Case(f"{bad_name}-card-name", "POST", "/v1/models", _card_with(name=f"m{bad}")))
        cases.append(
            Case(
                f"{bad_name}-card-class",
                "POST",
                "/v1/models",
                _card_with(class_names=["a", "b", "c", f"d{bad}"]),
            )
        )
        cases.append(
            Case(f"{bad_name}-card-arch", "POST", "/v1/models", _card_with(arch=f"occulta_resnet_tiny{bad}"))
        )
    for what, make in _paths():
        cases.append(Case(f"bad-utf8-path-{what}", "GET", make("x%FF%FEy"), status=(400,)))
        cases.append(Case(f"overlong-path-{what}", "GET", make("y" * 5000)))
    for param in ("status", "model_id", "cursor", "limit"):
        cases.append(Case(f"bad-utf8-query-{param}", "GET", f"/v1/audits?{param}=%C3%28", status=(400,)))
    cases.append(
        Case("nul-artifact-path", "GET", lambda ctx: f"/v1/audits/{ctx.audit_id}/artifacts/a%00.png")
    )
    cases.append(Case("nul-cancel", "POST", "/v1/audits/aud%00x/cancel"))
    cases.append(Case("nul-key-revoke", "DELETE", "/v1/keys/key%00x"))
    cases.append(
        Case(
            "nul-form-name",
            "POST",
            "/v1/models",
            lambda ctx: _card(ctx, ctx.card) | {"data": {"name": "m\x00"}},
        )
    )
    cases.append(
        Case(
            "surrogate-yaml-class",
            "POST",
            "/v1/models",
            _card_text(
                "arch: occulta_resnet_tiny\ninput_size: [3, 32, 32]\nweights: w.safetensors\n"
                'class_names: ["a", "b", "c", "d\\ud800"]\n'
            ),
        )
    )

    # 3. Nesting: JSON bodies, cards, configs and policies.
    for depth in (40, 2_000, 100_000):
        nested = _nested(depth)
        cases.append(
            Case(
                f"deep-audit-config-{depth}",
                "POST",
                "/v1/audits",
                lambda ctx, n=nested: raw_json(_dumps(audit_body(ctx))[:-1] + f', "regions": {n}}}'),
            )
        )
        cases.append(
            Case(
                f"deep-dataset-{depth}",
                "POST",
                "/v1/datasets",
                lambda ctx, n=nested: raw_json(f'{{"ref": {n}}}'),
            )
        )
        cases.append(
            Case(f"deep-key-{depth}", "POST", "/v1/keys", lambda ctx, n=nested: raw_json(f'{{"name": {n}}}'))
        )
        cases.append(
            Case(
                f"deep-gate-body-{depth}",
                "POST",
                "/v1/gate",
                lambda ctx, n=nested: raw_json(f'{{"audit_id": {n}}}'),
            )
        )
        cases.append(
            Case(
                f"deep-card-json-{depth}",
                "POST",
                "/v1/models",
                _card_text(
                    '{"arch": "occulta_resnet_tiny", "input_size": [3, 32, 32], "class_names": ["a", "b"], "x": '
                    + nested
                    + "}"
                ),
            )
        )
        cases.append(
            Case(
                f"deep-card-yaml-{depth}",
                "POST",
                "/v1/models",
                _card_text(
                    "arch: occulta_resnet_tiny\ninput_size: [3, 32, 32]\nclass_names: [a, b]\nx: "
                    + nested
                    + "\n"
                ),
            )
        )
        policy = "assertions:\n  x: " + nested + "\n"
        cases.append(
            Case(
                f"deep-gate-policy-{depth}",
                "POST",
                "/v1/gate",
                lambda ctx, p=policy: raw_json(_dumps({"audit_id": ctx.audit_id, "policy": p})),
            )
        )

    for levels in (5, 8):
        lines = ["version: 1", "assertions:", "  b.verdict: &a0 [error, {in: [pass]}]"]
        for i in range(1, levels + 1):
            refs = ", ".join([f"*a{i - 1}"] * 9)
            lines.append(f"  c{i}.verdict: &a{i} [error, {{in: [{refs}]}}]")
        bomb = "\n".join(lines) + "\n"
        cases.append(
            Case(
                f"alias-bomb-gate-policy-{levels}",
                "POST",
                "/v1/gate",
                lambda ctx, p=bomb: raw_json(_dumps({"audit_id": ctx.audit_id, "policy": p})),
            )
        )

    # 4. Bytes that are not text, and JSON that is not JSON.
    for route in ("/v1/audits", "/v1/datasets", "/v1/keys", "/v1/gate"):
        tail = route.rsplit("/", 1)[1]
        cases.append(
            Case(
                f"utf8-{tail}",
                "POST",
                route,
                lambda ctx: {
                    "content": b'{"ref": "\xff\xfe\xc3("}',
                    "headers": {"content-type": "application/json"},
                },
                (400,),
            )
        )
        cases.append(Case(f"nan-{tail}", "POST", route, lambda ctx: raw_json('{"ref": NaN, "name": NaN}')))
        cases.append(
            Case(f"garbage-{tail}", "POST", route, lambda ctx: raw_json('{"ref": "x"} trailing'), (400,))
        )
        cases.append(
            Case(
                f"utf16-{tail}",
                "POST",
                route,
                lambda ctx: {
                    "content": '{"ref": "synthetic:shapes"}'.encode("utf-16"),
                    "headers": {"content-type": "application/json"},
                },
                (400,),
            )
        )
    cases.append(
        Case("utf8-card", "POST", "/v1/models", _card_text(b"arch: occulta_resnet_tiny\nname: \xff\xfe\n"))
    )

    # 5. Cards whose cost is far past their size.
    for levels in (5, 6, 9):
        cases.append(Case(f"alias-bomb-{levels}", "POST", "/v1/models", _card_text(alias_bomb(levels))))
    for kwargs in (
        {"embed_dim": 1024, "depth": 24, "num_heads": 16},
        {"depth": 10**9},
        {"img_size": 10**6},
        {"embed_dim": -5},
        {"num_classes": "many"},
        {"patch_size": 0.5},
    ):
        name = "-".join(f"{k}={v}" for k, v in kwargs.items())
        arch = (
            "vit_small_patch16_224"
            if "embed_dim" in kwargs or "img_size" in kwargs
            else "occulta_resnet_tiny"
        )
        cases.append(
            Case(
                f"arch-kwargs-{name}", "POST", "/v1/models", _card_with(arch=arch, arch_kwargs=kwargs), (422,)
            )
        )
    cases.append(
        Case("card-input-huge", "POST", "/v1/models", _card_with(input_size=[3, 100_000, 100_000]), (422,))
    )
    cases.append(
        Case(
            "card-too-many-tokens",
            "POST",
            "/v1/models",
            _card_with(
                arch="vit_tiny_patch16_224",
                input_size=[3, 1024, 1024],
                arch_kwargs={"patch_size": 4, "img_size": 1024},
            ),
            (422,),
        )
    )
    cases.append(Case("card-too-large", "POST", "/v1/models", _card_text("name: " + "x" * 2_000_000 + "\n")))

    # 6. Numbers that are not numbers, and budgets.
    for fld, text in (("std", "[.nan, 0.2, 0.2]"), ("mean", "[.inf, 0.5, 0.5]"), ("crop_pct", ".nan")):
        cases.append(
            Case(
                f"card-{fld}-nonfinite",
                "POST",
                "/v1/models",
                _card_text(
                    "arch: occulta_resnet_tiny\ninput_size: [3, 32, 32]\nweights: w.safetensors\n"
                    f"class_names: [a, b, c, d]\n{fld}: {text}\n"
                ),
                (422,),
            )
        )
    cases.append(
        Case(
            "card-std-json-nan",
            "POST",
            "/v1/models",
            _card_text(
                '{"arch": "occulta_resnet_tiny", "input_size": [3, 32, 32], "weights": "w.safetensors", '
                '"class_names": ["a", "b", "c", "d"], "std": [NaN, 0.2, 0.2]}'
            ),
            (422,),
        )
    )
    for value in ("NaN", "Infinity", "-Infinity", "1e400"):
        cases.append(
            Case(
                f"config-{value}",
                "POST",
                "/v1/audits",
                lambda ctx, v=value: raw_json(
                    _dumps(audit_body(ctx))[:-1].replace('"threshold": 0.2', f'"threshold": {v}') + "}"
                ),
                (422,),
            )
        )
    for query in (
        "n=200000&size=512",
        "n=100000&size=128",
        "n=-1",
        "size=99999999999999999999",
        "n=1e9",
        "classes=1000000",
    ):
        cases.append(
            Case(
                f"synthetic-{query}",
                "POST",
                "/v1/datasets",
                lambda ctx, q=query: raw_json(_dumps({"ref": f"synthetic:shapes?{q}"})),
                (422,),
            )
        )
    for audit, key, value in (
        ("lime_consistency", "n_samples", 1e9),
        ("lime_consistency", "n_samples", 10**9),
        ("lime_consistency", "n_images", 10**7),
        ("lime_consistency", "fills", ["black"] * 5000),
        ("sis", "retrain_epochs", 10**6),
        ("spurious_signal", "steps", 10**8),
        ("missingness_bias", "fractions", [0.5] * 100_000),
    ):
        cases.append(
            Case(
                f"budget-{audit}-{key}-{str(value)[:12]}",
                "POST",
                "/v1/audits",
                _audit_json(audits=[audit], config={audit: {key: value}}),
                (422,),
            )
        )
    cases.append(Case("budget-samples", "POST", "/v1/audits", _audit_json(samples=10**7), (422,)))
    cases.append(
        Case("budget-audits-list", "POST", "/v1/audits", _audit_json(audits=["test_noop"] * 100), (422,))
    )

    # 8. Suspected regions: typed, inline bytes only, never a server path.
    def region(**fields: Any) -> dict[str, Any]:
        return {"name": "mark", "box": [0, 0, 4, 4]} | fields

    for rid, bad_region in (
        ("box-text", region(box="x")),
        ("box-three", region(box=[0, 0, 1])),
        ("box-negative", region(box=[-1, 0, 4, 4])),
        ("box-zero", region(box=[0, 0, 0, 4])),
        ("box-huge", region(box=[0, 0, 1e30, 1e30])),
        ("box-outside", region(box=[10_000, 10_000, 5, 5])),
        ("box-strings", region(box=["0", "0", "a", "b"])),
        ("artifact-not-base64", region(artifact="not base64 at all!")),
        ("artifact-path", region(artifact="/etc/passwd")),
        ("artifact-jpeg", region(artifact=base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 64).decode())),
        ("artifact-png-bomb", region(artifact=base64.b64encode(png_header_only(100_000, 100_000)).decode())),
        ("artifact-too-big", region(artifact=base64.b64encode(b"\0" * 300_000).decode())),
        ("path-field", region(path="/etc/passwd")),
        ("server-path-name", {"path": "/tmp/x.png", "box": [0, 0, 4, 4]}),
        ("image-index-negative", region(image_index=-1)),
        ("name-empty", region(name="")),
        ("name-long", region(name="n" * 1000)),
    ):
        cases.append(
            Case(
                f"region-{rid}",
                "POST",
                "/v1/audits",
                lambda ctx, r=bad_region: raw_json(_dumps(audit_body(ctx, regions=[r]))),
                (422,),
            )
        )

    # 7. Oversize and odd requests.
    cases.append(
        Case(
            "json-over-cap",
            "POST",
            "/v1/keys",
            lambda ctx: raw_json(_dumps({"name": "x" * (2 * 1024 * 1024)})),
            (413,),
        )
    )
    cases.append(Case("id-too-long", "POST", "/v1/audits", _audit_json(model_id="m" * 10_000), (422,)))
    cases.append(
        Case(
            "policy-too-long",
            "POST",
            "/v1/gate",
            lambda ctx: raw_json(_dumps({"audit_id": ctx.audit_id, "policy": "#" * 100_000})),
            (422,),
        )
    )
    cases.append(Case("cursor-garbage", "GET", "/v1/audits?cursor=!!!notbase64", status=(400, 422)))
    cases.append(Case("cursor-wrong-json", "GET", "/v1/audits?cursor=WzEsMiwzXQ", status=(400, 422)))
    cases.append(
        Case(
            "artifact-traversal",
            "GET",
            lambda ctx: f"/v1/audits/{ctx.audit_id}/artifacts/..%2F..%2Fetc%2Fpasswd",
        )
    )
    cases.append(
        Case(
            "dataset-server-path",
            "POST",
            "/v1/datasets",
            lambda ctx: raw_json(_dumps({"ref": "/etc"})),
            (422,),
        )
    )
    cases.append(
        Case(
            "dataset-url",
            "POST",
            "/v1/datasets",
            lambda ctx: raw_json(_dumps({"ref": "http://169.254.169.254/latest/meta-data/"})),
            (422,),
        )
    )
    cases.append(Case("method-not-allowed", "PUT", "/v1/audits", status=(405,)))
    cases.append(
        Case(
            "multipart-empty-archive",
            "POST",
            "/v1/datasets",
            lambda ctx: {"files": {"archive": ("a.zip", b"PK\x05\x06" + b"\0" * 18, "application/zip")}},
            (422,),
        )
    )
    cases.append(
        Case(
            "multipart-no-archive",
            "POST",
            "/v1/datasets",
            lambda ctx: {"files": {"other": ("a.zip", b"x", "application/zip")}},
        )
    )
    cases.append(
        Case(
            "weights-garbage",
            "POST",
            "/v1/models",
            lambda ctx: {
                "files": {
                    "card": ("card.json", ctx.card, "application/json"),
                    "weights": ("w.pt", b"\x80\x04garbage", "x/y"),
                }
            },
            (422,),
        )
    )
    return cases


CORPUS = build_corpus()
