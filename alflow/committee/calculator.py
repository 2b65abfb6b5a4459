"""An ASE calculator that evaluates a committee of MACE models on one graph.

Each call builds the neighbour list and MACE's graph once and runs the
members on it; stress (and its displacement derivative) is only computed when
asked for (or always, with ``always_stress``), and only for 3D-periodic cells.

Two ways to drive molecular dynamics:

- ``propagator=None`` (committee mean): every call runs every member;
  ``energy``/``forces``/``stress`` are the committee means and the results
  also hold the committee keys below. M model evaluations per MD step.
- ``propagator=m`` (one member): every call runs member *m* only, and
  ``energy``/``forces``/``stress`` are member *m*'s, a smooth, conservative
  potential energy surface for the integrator. :meth:`CommitteeCalculator.
  evaluate_committee` runs the other M - 1 members on the graph that member
  *m* already used (same neighbour list, no rebuild) and returns the
  committee results; the walker calls it at its sampling interval. With an
  interval of k steps an MD step costs ``1 + (M - 1)/k`` model evaluations.

Committee keys (in ``results`` with ``propagator=None``, in the dict that
:meth:`~CommitteeCalculator.evaluate_committee` returns either way):

- ``energy``/``forces`` committee means, ``energy_comm`` (M,) eV,
  ``forces_comm`` (M, N, 3) eV/Å, ``stress_comm`` (M, 6) eV/Å³ when stress
  was computed for every member;
- ``energy_std`` (eV): population standard deviation of the total energy;
- ``forces_std`` (N,) eV/Å: per-atom force deviation (DP-GEN definition);
- ``max_force_dev`` (eV/Å): its largest value, the selection score.

Batches: :meth:`~CommitteeCalculator.run_members_batch` runs members on
several structures' graphs (:meth:`~CommitteeCalculator.graph_data`) at once,
one model call per member, and :meth:`~CommitteeCalculator.evaluate_batch`
evaluates the whole committee on a list of structures that way
(:mod:`alflow.exploration.batched` drives walkers with it).

mace and torch are imported when a committee is loaded, never at import time,
through :mod:`alflow.committee.mace_models` (which undoes mace's import side
effects and reads the model files).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols

from alflow.committee.mace_models import check_device, load_mace_models
from alflow.committee.mace_models import import_mace as _import_mace  # also imported from here
from alflow.committee.mace_models import torch_dtype as mace_torch_dtype
from alflow.committee.uncertainty import committee_statistics, stress_wanted
from alflow.errors import ExplorationError, TrainingError

__all__ = ["CommitteeCalculator", "MemberOutput", "load_committee", "member_results"]

logger = logging.getLogger(__name__)

#: One member's output for one structure: energy (eV), forces (N, 3) eV/Å and
#: Voigt stress (6,) eV/Å³ (None when not computed).
MemberOutput = tuple[float, np.ndarray, "np.ndarray | None"]


def member_results(
    member: int, energy_eV: float, forces_eV_A: np.ndarray, stress: np.ndarray | None
) -> dict[str, Any]:
    """ASE results of one (propagating) member; a non-finite energy or force is logged."""
    if not (math.isfinite(energy_eV) and np.all(np.isfinite(forces_eV_A))):
        logger.warning("member %d returned non-finite energy or forces", member)
    results: dict[str, Any] = {"energy": energy_eV, "free_energy": energy_eV, "forces": forces_eV_A}
    if stress is not None:
        results["stress"] = stress
    return results


class CommitteeCalculator(Calculator):
    """Committee of MACE models as one ASE calculator.

    Parameters
    ----------
    models
        Loaded MACE modules (use :func:`load_committee` to read files). All
        members must share the cutoff and the element table.
    device
        torch device.
    dtype
        ``"float32"`` or ``"float64"``: the members are converted to it.
    threads
        If given, ``torch.set_num_threads(threads)`` before each evaluation.
    model_paths
        Where the members came from (kept for provenance only).
    propagator
        None: every call evaluates the whole committee and returns its mean.
        A member index *m*: every call evaluates member *m* only (the forces
        that propagate MD); :meth:`evaluate_committee` adds the others.
    always_stress
        Compute stress with every call on 3D-periodic cells (NPT asks for
        forces and stress separately: this saves the second evaluation).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    See the module docstring for the result keys. ``stress`` is computed
    only when requested (or ``always_stress``) and only for cells periodic in
    all three directions (otherwise PropertyNotImplementedError).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(
        self,
        models: Sequence[Any],
        *,
        device: str = "cpu",
        dtype: str = "float32",
        threads: int | None = None,
        model_paths: Sequence[Path] | None = None,
        propagator: int | None = None,
        always_stress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(models) == 0:
            raise ValueError("a committee needs at least one model")
        if propagator is not None and not 0 <= propagator < len(models):
            raise ValueError(f"propagator must be a member index < {len(models)}, got {propagator}")
        check_device(device)
        mace = _import_mace()
        torch_dtype = mace_torch_dtype(dtype)
        self._mace = mace
        self.device = device
        self.dtype = dtype
        self._torch_dtype = torch_dtype
        self.threads = threads
        self.propagator = propagator
        self.always_stress = always_stress
        self.model_paths = [Path(p) for p in model_paths] if model_paths is not None else None
        self.models = []
        for model in models:
            model = model.to(device=device, dtype=torch_dtype)
            model.eval()
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            self.models.append(model)
        r_maxs = {round(float(m.r_max), 8) for m in self.models}
        if len(r_maxs) != 1:
            raise ValueError(f"committee members have different cutoffs: {sorted(r_maxs)}")
        self.r_max_A = r_maxs.pop()
        tables = {tuple(int(z) for z in m.atomic_numbers) for m in self.models}
        if len(tables) != 1:
            raise ValueError(f"committee members have different element tables: {sorted(tables)}")
        zs = tables.pop()
        self.z_table = mace.tools.AtomicNumberTable(list(zs))
        heads = getattr(self.models[0], "heads", None) or ["Default"]
        self.heads = list(heads)
        self.head = "Default" if "Default" in self.heads else self.heads[-1]
        # graph and per-member outputs of the last configuration (reused by evaluate_committee)
        self._batch: dict[str, Any] | None = None
        self._member_outputs: dict[int, MemberOutput] = {}
        self.model_evaluations = 0  # (member, structure) evaluations so far (a cost counter)
        self.model_calls = 0  # model forward calls (one per member per batch)
        self.committee_evaluations = 0  # evaluate_committee calls that ran members

    @property
    def n_members(self) -> int:
        """Committee size M."""
        return len(self.models)

    def graph_data(self, atoms: Atoms) -> Any:
        """MACE's ``AtomicData`` of ``atoms`` (CPU, committee dtype; neighbour list built once).

        Raises
        ------
        ExplorationError
            ``atoms`` holds elements the committee was not trained on.
        """
        import torch

        mace = self._mace
        unknown = sorted({int(z) for z in atoms.numbers} - set(self.z_table.zs))
        if unknown:
            names = [chemical_symbols[z] for z in unknown]
            raise ExplorationError(f"the committee was not trained on elements {names}")
        saved_dtype = torch.get_default_dtype()
        try:
            torch.set_default_dtype(self._torch_dtype)
            keyspec = mace.data.KeySpecification(info_keys={}, arrays_keys={})
            config = mace.data.config_from_atoms(
                atoms, key_specification=keyspec, head_name=self.head
            )
            return mace.data.AtomicData.from_config(
                config, z_table=self.z_table, cutoff=self.r_max_A, heads=self.heads
            )
        finally:
            torch.set_default_dtype(saved_dtype)

    def _collate(self, graphs: Sequence[Any]) -> dict[str, Any]:
        """One MACE input dict (a batch of disjoint graphs) on the committee's device."""
        batch = self._mace.tools.torch_geometric.Batch.from_data_list(list(graphs))
        return batch.to(self.device).to_dict()

    def _graph(self, atoms: Atoms) -> dict[str, Any]:
        """MACE's input dict for one configuration (neighbour list built once)."""
        return self._collate([self.graph_data(atoms)])

    def _forward(self, member: int, batch: dict[str, Any], want_stress: bool) -> list[MemberOutput]:
        """Run one member on a batch; (energy eV, forces eV/Å, Voigt stress eV/Å³) per graph."""
        out = self.models[member](
            dict(batch), training=False, compute_force=True, compute_stress=want_stress
        )
        energies = out["energy"].detach().cpu().numpy().astype(float)
        forces = out["forces"].detach().cpu().numpy().astype(float)
        ptr = batch["ptr"].cpu().numpy()
        stresses = out["stress"].detach().cpu().numpy() if want_stress else None
        outputs = []
        for g in range(len(ptr) - 1):
            stress = None
            if stresses is not None:
                stress = stresses[g][[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]].astype(float)
            outputs.append((float(energies[g]), forces[ptr[g] : ptr[g + 1]], stress))
        self.model_evaluations += len(outputs)
        self.model_calls += 1
        return outputs

    def _run_members(self, members: Sequence[int], want_stress: bool) -> None:
        """Run ``members`` on the cached graph and cache (energy, forces, stress) per member."""
        if self._batch is None:
            raise RuntimeError("internal: no graph built before running members")
        for m in members:
            self._member_outputs[m] = self._forward(m, self._batch, want_stress)[0]

    def structure_descriptors(self, structures: Sequence[Atoms]) -> np.ndarray:
        """Mean invariant node features of each structure, from member 0 (for diversity).

        The invariant (L = 0) channels of every interaction layer (mace's
        ``extract_invariant``, as ``MACECalculator.get_descriptors`` takes
        them), averaged over the structure's atoms; shape (n, d). Each
        structure is its own model call, so a frame's descriptor does not
        depend on the others.
        """
        import torch

        if len(structures) == 0:
            return np.zeros((0, 0))
        model = self.models[0]
        irreps_out = model.products[0].linear.irreps_out
        l_max = int(irreps_out.lmax)
        n_invariant = int(irreps_out.dim) // (l_max + 1) ** 2
        extract = self._mace.modules.utils.extract_invariant
        rows = []
        for atoms in structures:
            with torch.no_grad():
                out = model(dict(self._graph(atoms)), training=False, compute_force=False)
            feats = extract(
                out["node_feats"],
                num_layers=int(model.num_interactions),
                num_features=n_invariant,
                l_max=l_max,
            )
            rows.append(feats.mean(dim=0).detach().cpu().double().numpy())
        return np.stack(rows)

    def run_members_batch(
        self,
        graphs: Sequence[Any],
        members: Sequence[Sequence[int]],
        stress: Sequence[bool],
    ) -> list[dict[int, MemberOutput]]:
        """Run the members each structure needs, one batched model call per (member, stress).

        The structures that need member *m* form one MACE batch of disjoint
        graphs and *m* runs once on it; each structure's results are its own
        graph's, equal to a one-structure call up to round-off.

        Parameters
        ----------
        graphs
            Per structure, its :meth:`graph_data`.
        members
            Per structure, the member indices to run on it.
        stress
            Per structure, whether to compute its stress (3D-periodic cells only).

        Returns
        -------
        list of dict
            Per structure, member index → its :data:`MemberOutput`.

        Raises
        ------
        ValueError
            The sequences differ in length or name an unknown member.
        """
        import torch

        if not len(graphs) == len(members) == len(stress):
            raise ValueError(
                f"run_members_batch: {len(graphs)} graphs, {len(members)} member lists, "
                f"{len(stress)} stress flags"
            )
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (wanted, want_stress) in enumerate(zip(members, stress, strict=True)):
            for m in wanted:
                if not 0 <= m < self.n_members:
                    raise ValueError(
                        f"no committee member {m} (the committee has {self.n_members})"
                    )
                groups.setdefault((int(m), bool(want_stress)), []).append(i)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        results: list[dict[int, MemberOutput]] = [{} for _ in graphs]
        for (m, want_stress), indices in sorted(groups.items()):
            batch = self._collate([graphs[i] for i in indices])
            for i, output in zip(indices, self._forward(m, batch, want_stress), strict=True):
                results[i][m] = output
        return results

    def evaluate_batch(
        self, structures: Sequence[Atoms], *, stress: bool = False
    ) -> list[dict[str, Any]]:
        """The whole committee on ``structures``, one batched call per member.

        Returns, per structure, the committee keys of the module docstring as
        a ``propagator=None`` calculation gives them (to round-off); with
        ``stress`` (all 3D-periodic, else PropertyNotImplementedError) also
        the stresses. An unknown element raises ExplorationError.
        """
        if stress and not all(a.pbc.all() for a in structures):
            raise PropertyNotImplementedError(
                "stress needs a cell periodic in all three directions"
            )
        graphs = [self.graph_data(a) for a in structures]
        every = list(range(self.n_members))
        outputs = self.run_members_batch(graphs, [every] * len(graphs), [stress] * len(graphs))
        return [self.committee_results(o) for o in outputs]

    def committee_results(self, outputs: Mapping[int, MemberOutput]) -> dict[str, Any]:
        """The committee keys (module docstring) of one structure from every member's output
        (member index → :data:`MemberOutput`, as :meth:`run_members_batch` returns)."""
        ordered = [outputs[m] for m in range(self.n_members)]
        energies = np.array([o[0] for o in ordered])
        forces = np.stack([o[1] for o in ordered])
        if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))):
            logger.warning("committee returned non-finite energies or forces")
        stresses = None
        if all(o[2] is not None for o in ordered):
            stresses = np.stack([o[2] for o in ordered])
        return committee_statistics(energies, forces, stresses)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Evaluate the committee (or the propagating member) on ``atoms``.

        See the class and module notes for the results.
        """
        import torch

        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = stress_wanted(atoms, properties, self.always_stress)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self._batch = self._graph(atoms)
        self._member_outputs = {}
        if self.propagator is None:
            self._run_members(range(self.n_members), want_stress)
            self.results = self.committee_results(self._member_outputs)
            self.committee_evaluations += 1
            return
        self._run_members([self.propagator], want_stress)
        self.results = member_results(self.propagator, *self._member_outputs[self.propagator])

    def evaluate_committee(self, atoms: Atoms) -> dict[str, Any]:
        """Committee results at ``atoms``'s configuration, reusing what was computed there.

        With ``propagator=m`` and ``atoms`` unchanged since the last
        calculation (the MD step just computed its forces), only the other
        M - 1 members run, on the same graph. ``self.results`` (what the
        integrator uses) is left as it is.

        Parameters
        ----------
        atoms
            The configuration (usually the walker's atoms).

        Returns
        -------
        dict
            The committee keys of the module docstring (``energy``/``forces``
            are committee means).
        """
        import torch

        if self.calculation_required(atoms, ["forces"]) or self._batch is None:
            self.calculate(atoms, ["energy", "forces"], all_changes)
        if self.propagator is None:
            return dict(self.results)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        missing = [m for m in range(self.n_members) if m not in self._member_outputs]
        want_stress = self._member_outputs[self.propagator][2] is not None
        self._run_members(missing, want_stress)
        if missing:
            self.committee_evaluations += 1
        return self.committee_results(self._member_outputs)


def load_committee(
    model_paths: Sequence[Path],
    *,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    propagator: int | None = None,
    always_stress: bool = False,
) -> CommitteeCalculator:
    """Load MACE model files as one committee calculator.

    Parameters
    ----------
    model_paths
        ``.model`` files written by MACE (pickled modules), in member order.
    device
        torch device.
    dtype
        ``"float32"`` or ``"float64"``.
    threads
        If given, torch's intra-op threads are set to it before each evaluation.
    propagator
        None: each call evaluates the whole committee (mean forces). A member
        index: each call evaluates that member only; see
        :meth:`CommitteeCalculator.evaluate_committee`.
    always_stress
        Compute stress with every call on 3D-periodic cells (for NPT).

    Returns
    -------
    CommitteeCalculator

    Raises
    ------
    TrainingError
        A file is missing or is not a loadable MACE model (the message names
        the file), or the members do not fit together.
    """
    paths = [Path(p) for p in model_paths]
    models = load_mace_models(paths, device)
    try:
        return CommitteeCalculator(
            models,
            device=device,
            dtype=dtype,
            threads=threads,
            model_paths=paths,
            propagator=propagator,
            always_stress=always_stress,
        )
    except ValueError as exc:
        raise TrainingError(f"inconsistent committee {[str(p) for p in paths]}: {exc}") from exc
