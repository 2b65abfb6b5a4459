"""How a GPAW label is retried after an SCF failure, and what a retry changed.

:func:`escalated_parameters` makes each retry's parameters gentler (numerics
first, more smearing only on the last retry); :func:`physics_changed` and
:func:`effective_parameters_hash` tell whether a result was computed with
other physics than requested, and which. Used by
:class:`alflow.labeling.gpaw_labeler.GPAWLabeler`.
"""

from __future__ import annotations

from typing import Any

from alflow.config import config_hash

__all__ = [
    "GENTLE_MIXER",
    "NUMERICS_KEYS",
    "effective_parameters_hash",
    "escalated_parameters",
    "physics_changed",
]

#: Pulay mixer of every retry (GPAW's defaults are beta 0.05-0.25, nmaxold 3-5, weight 50-100).
GENTLE_MIXER: dict[str, float] = {"beta": 0.05, "nmaxold": 5, "weight": 50.0}
#: Smearing width (eV) of the last retry when the request asked for none.
_RETRY_WIDTH_eV = 0.05

#: Parameters that only steer the SCF towards the same solution (no effect on the physics).
NUMERICS_KEYS = ("maxiter", "mixer", "convergence_energy_eV", "convergence_density")


def escalated_parameters(
    requested: dict[str, Any], attempt: int, max_retries: int | None = None
) -> tuple[dict[str, Any], dict]:
    """Parameters of attempt ``attempt``: the request, made gentler after each SCF failure.

    Retry k (k ≥ 1) runs with ``maxiter`` × 2**k and the gentle Pulay mixer
    (:data:`GENTLE_MIXER`). The last retry (k = ``max_retries`` ≥ 2) also
    doubles the smearing width (or sets 0.05 eV when none was asked for):
    more smearing is the last resort because it changes the energy.

    Parameters
    ----------
    requested
        The requested parameter set (GPAWOracle fields).
    attempt
        0 for the first try, k for the k-th retry.
    max_retries
        The retry budget; None: treat ``attempt`` as the last retry when ≥ 2.

    Returns
    -------
    parameters, changed
        The parameters to run with, and the subset that differs from the request.
    """
    if attempt <= 0:
        return dict(requested), {}
    last = attempt if max_retries is None else max_retries
    changed: dict[str, Any] = {
        "maxiter": int(requested["maxiter"]) * 2**attempt,
        "mixer": dict(GENTLE_MIXER),
    }
    if attempt >= 2 and attempt >= last:
        width_eV = float(requested["smearing_width_eV"])
        changed["smearing_width_eV"] = width_eV * 2 if width_eV > 0 else _RETRY_WIDTH_eV
    return {**requested, **changed}, changed


def physics_changed(changed: dict[str, Any]) -> bool:
    """True when a retry changed more than the SCF numerics (:data:`NUMERICS_KEYS`)."""
    return any(key not in NUMERICS_KEYS for key in changed)


def effective_parameters_hash(parameters: dict[str, Any]) -> str:
    """Hash of the physics of a parameter set: :func:`config_hash` without the numerics keys."""
    return config_hash({k: v for k, v in parameters.items() if k not in NUMERICS_KEYS})
