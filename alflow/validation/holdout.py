"""Held-out errors: the final committee on frames no committee was ever trained on."""

from __future__ import annotations

from typing import Any

from alflow.steps.holdout import holdout_errors
from alflow.validation.common import ValidationRun

__all__ = ["check_holdout"]


def check_holdout(run: ValidationRun) -> dict[str, Any]:
    """Force RMSE (eV/Å) and energy MAE (meV/atom) of the committee mean on held-out frames.

    Returns
    -------
    dict
        :func:`alflow.steps.holdout.holdout_errors`' figures; ``n_frames`` 0
        and a ``note`` when the campaign has no labeled held-out frame.
    """
    errors = holdout_errors(run.ctx, run.calc)
    if errors is None:
        return {
            "force_rmse_eV_A": None,
            "energy_mae_meV_atom": None,
            "n_frames": 0,
            "note": "no labeled held-out frame (initial.n_holdout: 0?)",
        }
    return dict(errors)
