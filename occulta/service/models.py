"""Model uploads: card + checkpoint in, a validated `models` row and stored objects out, or a domain
error and nothing left behind (no row, no objects)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from occulta.db import AuditJob, ModelRecord, new_id
from occulta.db.models import QUEUED, RUNNING
from occulta.errors import CardError, ConflictError, OccultaError, WeightsError
from occulta.settings import Settings
from occulta.storage import ObjectStore, model_prefix
from occulta.storage.base import CHUNK, CappedReader

MAX_CARD_BYTES = 1024 * 1024
CARD_FILE = "card.json"


def sniff_weights_format(head: bytes) -> str:
    """safetensors starts with a little-endian u64 header length and a JSON object; everything else is
    handed to `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers."""
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "torch"


def parse_card(raw: bytes, *, source: str = "the model card") -> dict[str, Any]:
    from occulta.cards import load_card_data  # size, alias, depth and text budgets

    if len(raw) > MAX_CARD_BYTES:
        raise CardError(f"{source} is larger than {MAX_CARD_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"{source} is not valid UTF-8 text (byte {exc.start})") from None
    return load_card_data(text, source=source)


def shown_name(filename: str | None, default: str) -> str:
    """The user's own file name for messages (never for storage keys): its last part, printable."""
    name = re.sub(r"[^\w.\- ]", "_", Path(filename or "").name)[:100].strip()
    return name or default


def _validate(card_path: Path, max_params: int, *, card_name: str, weights_name: str) -> Any:
    from occulta.cards import validate_model

    try:
        return validate_model(card_path, max_params=max_params, shown_as=card_name)
    except OccultaError:
        raise
    except Exception as exc:  # untrusted bytes: any loader failure is the upload's fault, said plainly
        raise WeightsError(
            f"the weights {weights_name} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None


def find_same_model(
    session: Session, *, tenant_id: str, sha256: str, card: dict[str, Any]
) -> ModelRecord | None:
    """The tenant's model with this checkpoint and this card, if it was uploaded before: a re-run
    CI job or a retried submit then reuses it instead of piling up copies of one checkpoint."""
    query = select(ModelRecord).where(ModelRecord.tenant_id == tenant_id, ModelRecord.sha256 == sha256)
    return next(
        (row for row in session.scalars(query.order_by(ModelRecord.created_at)) if row.card == card), None
    )


def upload_or_find_model(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    tenant_id: str,
    card: BinaryIO,
    weights: BinaryIO,
    name: str | None = None,
    card_filename: str | None = None,
    weights_filename: str | None = None,
) -> tuple[ModelRecord, bool]:
    """Copy the checkpoint to a private temp dir (capped, hashed), validate it by loading it into the
    arch on CPU, and only then store it under a server-built key and insert the row. The same
    checkpoint with the same card again returns the tenant's existing model; the flag says whether
    this call created one. Errors name the user's files (`card_filename`), not the server's copies."""
    card_name = shown_name(card_filename, "(uploaded)")
    card_data = parse_card(card.read(MAX_CARD_BYTES + 1), source=f"model card {card_name}")
    model_id = new_id("mdl")
    with tempfile.TemporaryDirectory(prefix="occulta-upload-") as tmp:
        work = Path(tmp)
        raw = work / "weights.upload"
        reader = CappedReader(weights, settings.max_upload_bytes)
        with raw.open("wb") as out:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
        shown_weights = shown_name(weights_filename, "(uploaded)")
        if reader.size == 0:
            raise WeightsError(f"the weights file {shown_weights} is empty")
        with raw.open("rb") as fh:
            fmt = sniff_weights_format(fh.read(16))
        weights_name = "weights.safetensors" if fmt == "safetensors" else "weights.pt"
        raw.rename(work / weights_name)
        card_data["weights"] = weights_name  # the card's own path points at the user's disk
        same = find_same_model(session, tenant_id=tenant_id, sha256=reader.sha256, card=card_data)
        if same is not None:
            return same, False
        (work / CARD_FILE).write_text(json.dumps(card_data, indent=2, sort_keys=True))
        parsed = _validate(
            work / CARD_FILE, settings.max_model_params, card_name=card_name, weights_name=shown_weights
        )
        class_names = list(getattr(parsed, "class_names", None) or card_data.get("class_names") or [])
        arch = str(getattr(parsed, "arch", None) or card_data.get("arch"))

        prefix = model_prefix(tenant_id, model_id)
        try:
            store.put_file(prefix + CARD_FILE, work / CARD_FILE, content_type="application/json")
            store.put_file(prefix + weights_name, work / weights_name)
            row = ModelRecord(
                id=model_id,
                tenant_id=tenant_id,
                name=(name or str(card_data.get("name") or arch))[:200],
                arch=arch,
                format=fmt,
                sha256=reader.sha256,
                size_bytes=reader.size,
                storage_key=prefix,
                num_classes=len(class_names),
                class_names=class_names,
                card=card_data,
            )
            session.add(row)
            session.commit()
        except BaseException:
            session.rollback()
            store.delete_prefix(prefix)
            raise
    return row, True


def list_models(session: Session, *, tenant_id: str) -> list[ModelRecord]:
    """The tenant's models, newest first."""
    query = select(ModelRecord).where(ModelRecord.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(ModelRecord.created_at.desc())))


def delete_model(session: Session, store: ObjectStore, *, row: ModelRecord) -> None:
    """Delete a model and its objects; refused while an audit still needs the weights."""
    busy = session.scalars(
        select(AuditJob.id)
        .where(AuditJob.model_id == row.id, AuditJob.status.in_((QUEUED, RUNNING)))
        .limit(1)
    ).first()
    if busy is not None:
        raise ConflictError(
            f"model {row.id} is used by audit {busy}, which has not finished; cancel it first"
        )
    prefix = row.storage_key
    session.delete(row)
    session.commit()
    store.delete_prefix(prefix)
