"""Run every check on the final committee and keep the result (store, JSON, figures)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alflow.errors import AlflowError
from alflow.potential.load import final_record
from alflow.steps.context import StepContext
from alflow.store.store import FINAL, utcnow
from alflow.validation.common import (
    ReferenceLabels,
    ValidationRun,
    ValidationRunError,
    initial_structures,
    plain,
)
from alflow.validation.dimers import check_dimers
from alflow.validation.eos import check_eos
from alflow.validation.figures import write_figures
from alflow.validation.holdout import check_holdout
from alflow.validation.md import check_md_stability
from alflow.validation.summary import summarize
from alflow.validation.transfer import check_transfer

__all__ = ["CHECKS", "validate_potential"]

log = logging.getLogger(__name__)

#: The checks, in the order they run: result key → function of a ValidationRun.
CHECKS: dict[str, Callable[[ValidationRun], dict[str, Any]]] = {
    "dimers": check_dimers,
    "eos": check_eos,
    "md_stability": check_md_stability,
    "holdout": check_holdout,
    "transfer": check_transfer,
}


def _prepare(ctx: StepContext, out_dir: Path) -> tuple[ValidationRun, dict[str, Any]]:
    """Load the final committee and the campaign's data for the checks."""
    store, campaign = ctx.store, ctx.campaign
    record = final_record(store, campaign)
    models = store.trained_models(campaign, FINAL)
    if len(models) < 2:
        raise ValidationRunError(
            f"the final fit of campaign '{campaign}' has {len(models)} trained members; "
            "a committee needs 2: run 'alflow run CAMPAIGN.yaml --retry-fizzled'"
        )
    labeler = ctx.labeler()
    iteration = record.get("last_iteration")
    run = ValidationRun(
        ctx=ctx,
        calc=ctx.load_committee(models),
        models=models,
        structures=initial_structures(ctx),
        training_frames=store.labeled_frames(campaign, labeler.parameters_hash()),
        references=ReferenceLabels(
            ctx=ctx,
            labeler=labeler,
            iteration=int(iteration) if iteration is not None else 0,
            workdir=out_dir / "reference",
        ),
    )
    final = {
        "members": [m["_id"] for m in models],
        "members_sha256": [m.get("sha256") for m in models],
        "n_labels": record.get("n_labels"),
        "training_set_sha256": record.get("training_set_sha256"),
    }
    return run, final


def _run_check(name: str, check: Callable[[ValidationRun], dict], run: ValidationRun) -> dict:
    """One check; an expected failure (AlflowError) becomes ``{"error": ...}``."""
    start = time.perf_counter()
    log.info("validation: %s", name)
    try:
        result = check(run)
    except AlflowError as exc:
        log.warning("validation %s failed: %s", name, exc)
        result = {"error": str(exc)}
    result["wall_s"] = time.perf_counter() - start
    return result


def validate_potential(ctx: StepContext, out_dir: Path | None = None) -> dict[str, Any]:
    """Validate the campaign's final committee (see docs/validation.md).

    Runs the dimer curves, E(V), the MD stability run, the held-out errors
    and the transfer test (:data:`CHECKS`), stores the result with
    ``store.put_validation`` and writes ``validation.json`` and the PNG
    figures into ``out_dir``.

    Parameters
    ----------
    ctx
        Store, campaign config (its ``validation`` section), settings, work directory.
    out_dir
        Figures, ``validation.json`` and the reference calculations
        (``reference/``); default ``ctx.workdir / "validation"``.

    Returns
    -------
    dict
        ``dimers``, ``eos``, ``md_stability``, ``holdout``, ``transfer`` (a
        check that failed is ``{"error": ...}``), ``summary`` (the flat
        headline figures), ``references`` (calculations run, reused,
        failed), ``final`` (the committee validated), ``config``,
        ``figures``, ``out_dir``, ``wall_s``.

    Raises
    ------
    StoreError
        Unknown campaign, or no trained final fit.
    ValidationRunError
        Fewer than two trained final members.
    """
    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(ctx.workdir) / "validation"
    out.mkdir(parents=True, exist_ok=True)
    run, final = _prepare(ctx, out)
    result: dict[str, Any] = {"campaign": ctx.campaign, "final": final}
    for name, check in CHECKS.items():
        result[name] = _run_check(name, check, run)
    refs = run.references
    result["references"] = {"computed": refs.computed, "reused": refs.reused, "failed": refs.failed}
    if refs.errors:
        result["references"]["errors"] = refs.errors[:20]
    result["summary"] = summarize(result, result["references"])
    result["config"] = ctx.config.validation.model_dump(mode="json")
    result["wall_s"] = time.perf_counter() - start
    result["created"] = utcnow().isoformat()
    result["out_dir"] = str(out.resolve())
    result = plain(result)
    result["figures"] = [p.name for p in write_figures(result, out)]
    (out / "validation.json").write_text(
        json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8"
    )
    ctx.store.put_validation(ctx.campaign, result)
    log.info("validation of '%s' done in %.0f s: %s", ctx.campaign, result["wall_s"], out)
    return result
