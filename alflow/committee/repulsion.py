"""A repulsive prior whose inner radius follows the data: ZBL below the shortest pair seen.

An ML potential is only fitted where the data are. Squeeze two atoms closer
than any pair in the training set and the model extrapolates, often into an
attractive well. The cure practitioners use (ACE's inner cutoff, GAP's core
potential) is a fixed physical repulsion where there are no data:

- the Ziegler–Biersack–Littmark universal screened nuclear repulsion
  (screening length ``0.8854 a0 / (Z1^0.23 + Z2^0.23)``), per pair;
- multiplied by MACE's polynomial envelope (p = 6), which is 1 at r = 0 and
  falls smoothly to 0, value and derivatives, at the pair's inner radius
  ``R_A + R_B``;
- each element's radius ``R_A`` is half the shortest distance of any pair
  with an ``A`` atom in the training data, so ``R_A + R_B`` never exceeds the
  shortest ``A``–``B`` distance seen: the prior is exactly zero on every
  training frame and the fit is the same with or without it.

MACE's own ``--pair_repulsion`` switches ZBL off at the sum of covalent radii
(2.64 Å for Cu–Cu, inside the data) with a screening length 2.5× shorter than
ZBL's: the network learns to cancel it where there are data, and that
cancellation extrapolates into a well below them. Here the prior is put into
each trained MACE model as its ``pair_repulsion_fn`` (mace-torch's
:class:`~mace.modules.radial.ZBLBasis` with its radii and screening set), so
the exported ``.model`` files, their TorchScript form and LAMMPS carry it.

:func:`attach_repulsion` and :func:`strip_repulsion` import mace, which
changes process-wide torch state: they run in the member's MACE job
(:mod:`alflow.committee.mace_job`), never in the caller; :func:`repulsion_record`
(the radii, from the frames alone) runs anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from alflow.committee.mace_models import import_mace
from alflow.structures import shortest_pair_distances_A

__all__ = [
    "ZBL_SCREENING_EXPONENT",
    "ZBL_SCREENING_PREFACTOR",
    "attach_repulsion",
    "load_model",
    "repulsion_radii_A",
    "repulsion_record",
    "strip_repulsion",
]

#: ZBL universal screening length a = 0.8854 a0 / (Z1^0.23 + Z2^0.23).
ZBL_SCREENING_PREFACTOR = 0.8854
ZBL_SCREENING_EXPONENT = 0.23
#: Polynomial envelope order of the switch-off at the inner radius.
ENVELOPE_P = 6


def repulsion_radii_A(
    shortest_A: Mapping[tuple[str, str], float], elements: Iterable[str]
) -> dict[str, float]:
    """Per-element radius (Å) so that ``R_A + R_B`` ≤ the shortest ``A``–``B`` distance.

    Parameters
    ----------
    shortest_A
        :func:`alflow.structures.shortest_pair_distances_A` of the training set.
    elements
        The model's elements. One without any pair in the data keeps half
        its ase covalent radius (its pairs are short-range unknown anyway).

    Returns
    -------
    dict
        Radius by chemical symbol.
    """
    radii = {}
    for element in elements:
        seen = [d for pair, d in shortest_A.items() if element in pair]
        radii[element] = (
            min(seen) / 2.0 if seen else 0.5 * float(covalent_radii[atomic_numbers[element]])
        )
    return radii


def load_model(path: Path) -> Any:
    """A pickled MACE model read on the CPU (torch's default dtype kept as it was)."""
    import torch

    import_mace()
    saved = torch.get_default_dtype()
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    finally:
        torch.set_default_dtype(saved)


def attach_repulsion(model_path: Path, out_path: Path, radii_A: Mapping[str, float]) -> Path:
    """Write ``model_path`` with the data-following ZBL prior to ``out_path``.

    Any pair repulsion the model had is replaced.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    import torch
    from mace.modules.radial import ZBLBasis

    model = load_model(Path(model_path))
    dtype = next(model.parameters()).dtype
    zbl = ZBLBasis(p=ENVELOPE_P).to(dtype)
    with torch.no_grad():
        zbl.a_prefactor.fill_(ZBL_SCREENING_PREFACTOR)
        zbl.a_exp.fill_(ZBL_SCREENING_EXPONENT)
        for symbol, radius in radii_A.items():
            zbl.covalent_radii[atomic_numbers[symbol]] = float(radius)
    model.pair_repulsion_fn = zbl
    model.pair_repulsion = True
    torch.save(model, out_path)
    return Path(out_path)


def strip_repulsion(model_path: Path, out_path: Path) -> Path:
    """Write ``model_path`` without its pair repulsion (the start of a continued fit)."""
    import torch

    model = load_model(Path(model_path))
    if hasattr(model, "pair_repulsion"):
        del model.pair_repulsion
        del model.pair_repulsion_fn
    torch.save(model, out_path)
    return Path(out_path)


def zbl_pair_energy_eV(z1: int, z2: int, r_A: float) -> float:
    """Unscreened-envelope ZBL energy (eV) of one pair at ``r_A`` (for checks and docs)."""
    import math

    a = ZBL_SCREENING_PREFACTOR * 0.529 / (z1**ZBL_SCREENING_EXPONENT + z2**ZBL_SCREENING_EXPONENT)
    x = r_A / a
    phi = (
        0.1818 * math.exp(-3.2 * x)
        + 0.5099 * math.exp(-0.9423 * x)
        + 0.2802 * math.exp(-0.4028 * x)
        + 0.02817 * math.exp(-0.2016 * x)
    )
    return 14.3996 * z1 * z2 / r_A * phi


def repulsion_record(frames: Sequence[Atoms], cutoff_A: float) -> dict[str, Any]:
    """The prior for a training set: shortest pairs, radii and inner radii (Å), by name."""

    shortest = shortest_pair_distances_A(frames, cutoff_A)
    elements = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    radii = repulsion_radii_A(shortest, elements)
    return {
        "kind": "zbl",
        "screening": "universal (0.8854 a0 / (Z1^0.23 + Z2^0.23))",
        "radii_A": radii,
        "shortest_training_distance_A": {"-".join(k): v for k, v in sorted(shortest.items())},
        "inner_radius_A": {
            f"{a}-{b}": radii[a] + radii[b] for i, a in enumerate(elements) for b in elements[i:]
        },
    }
