"""What models a folder holds, read from their cards."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from streamsig.models.card import CARD_FILE, MODEL_FILE, read_card, sha256_bytes


def list_models(root: Path | str) -> list[dict[str, Any]]:
    """One summary per ``<root>/<model-id>/card.json``, newest first.

    ``verified`` tells whether ``model.onnx`` still has the card's sha256; a folder
    whose card cannot be read is listed with ``error`` instead.

    >>> list_models("/nonexistent")
    []
    """
    root = Path(root)
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not (d / CARD_FILE).is_file():
            continue
        try:
            card = read_card(d)
        except ValueError as e:
            out.append({"path": str(d), "error": str(e)})
            continue
        onnx = d / MODEL_FILE
        overall = card.get("metrics", {}).get("overall", {})
        out.append({
            "model_id": card["model_id"], "model_type": card["model_type"],
            "created": card["created"], "path": str(d), "features": len(card["features"]),
            "label": card["label"].get("description"), "data_sha256": card["data"].get("sha256"),
            "symbols": card["data"].get("symbols") or [], "label_cfg": card["label"],
            "macro_f1": overall.get("macro_f1"), "log_loss": overall.get("log_loss"),
            "verified": onnx.is_file() and sha256_bytes(onnx.read_bytes()) == card["onnx"]["sha256"],
        })
    return sorted(out, key=lambda m: m.get("created", ""), reverse=True)


def default_model() -> Path | None:
    """The committed default model (``models/default``), if this checkout has one."""
    here = Path(__file__).resolve().parents[2] / "models" / "default"
    return here if (here / "card.json").exists() else None
