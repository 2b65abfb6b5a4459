"""What every check of the validation shares: the run's inputs and reference labels.

:class:`ValidationRun` holds the loaded final committee, the campaign's
training data (shortest pair distances, largest frame), its initial
structures and a :class:`ReferenceLabels` that computes each reference
calculation once: every configuration it labels is stored as a structure of
status ``validation`` with its label, so a second validation reuses the
labels and no validation frame ever enters the training data.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.config import BulkStructure, FileStructure
from alflow.errors import AlflowError, LabelingError
from alflow.labeling import Labeler
from alflow.steps.context import StepContext
from alflow.steps.label import failure_document, record_label_outcome
from alflow.structures import build_initial_structures, shortest_pair_distances_A, structure_key

__all__ = [
    "VALIDATION_STATUS",
    "InitialStructure",
    "ReferenceLabels",
    "ValidationRun",
    "ValidationRunError",
    "initial_structures",
    "plain",
    "repeat_to",
]

log = logging.getLogger(__name__)

#: Status of every structure the validation makes: never trained on.
VALIDATION_STATUS = "validation"


class ValidationRunError(AlflowError):
    """The validation cannot run (no committee, nothing to validate on)."""


def plain(value: Any) -> Any:
    """JSON/BSON-able copy: numpy to lists and floats, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def repeat_to(atoms: Atoms, min_atoms: int, more_than: int = 0) -> tuple[Atoms, list[int]]:
    """Repeat ``atoms`` along its periodic directions to ≥ ``min_atoms`` and > ``more_than``.

    Each step adds one repetition along the periodic direction that is
    shortest in the repeated cell, so the supercell stays as compact as the
    cell allows.

    Returns
    -------
    atoms, repeats
        The supercell and its repetitions (non-periodic directions stay 1).
    """
    repeats = [1, 1, 1]
    periodic = [i for i in range(3) if atoms.pbc[i]]
    lengths = atoms.cell.lengths()
    n = len(atoms)
    while periodic and (
        n * int(np.prod(repeats)) < min_atoms or n * int(np.prod(repeats)) <= more_than
    ):
        shortest = min(periodic, key=lambda i: (lengths[i] * repeats[i], i))
        repeats[shortest] += 1
    return atoms.repeat(repeats), repeats


@dataclass(frozen=True)
class InitialStructure:
    """One initial structure with what its specification says about it.

    Attributes
    ----------
    index
        Position in the campaign's initial structures.
    atoms
        The structure as built (supercell applied).
    spec
        The ``initial.structures`` entry it came from.
    """

    index: int
    atoms: Atoms
    spec: BulkStructure | FileStructure

    @property
    def cubic_lattice_constant_A(self) -> float | None:
        """The conventional cubic lattice constant, for a cubic bulk (else None).

        A ``bulk`` entry with ``cubic: true`` whose cell is orthogonal gives
        its first cell edge divided by the first supercell repetition; any
        other cell that is a cube gives its edge.
        """
        cell = np.asarray(self.atoms.cell)
        if not self.atoms.pbc.all() or not np.allclose(cell, np.diag(np.diag(cell)), atol=1e-6):
            return None
        edges = np.diag(cell)
        if isinstance(self.spec, BulkStructure) and self.spec.cubic:
            units = edges / np.asarray(self.spec.supercell, dtype=float)
            if np.allclose(units, units[0], rtol=1e-6):
                return float(units[0])
        if np.allclose(edges, edges[0], rtol=1e-6):
            return float(edges[0])
        return None


def initial_structures(ctx: StepContext) -> list[InitialStructure]:
    """The campaign's initial structures with their specifications, in order."""
    out: list[InitialStructure] = []
    initial = ctx.config.initial
    for spec in initial.structures:
        single = initial.model_copy(update={"structures": [spec]})
        for atoms in build_initial_structures(single, ctx.config.base_dir):
            out.append(InitialStructure(index=len(out), atoms=atoms, spec=spec))
    return out


@dataclass
class ReferenceLabels:
    """Reference calculations of the validation, each computed once and stored.

    Every configuration is stored as a structure of status ``validation``
    (origin ``{"kind": "validation", "check": ...}``) with its label in the
    form :func:`alflow.steps.label.record_label_outcome` writes; a label
    already stored for its key and parameter set is reused. A configuration
    the campaign already holds under another status (the unstrained initial
    structure is a seed frame) keeps that status.

    Attributes
    ----------
    computed, reused, failed
        Reference calculations run, labels reused, calculations that failed.
    """

    ctx: StepContext
    labeler: Labeler
    iteration: int
    workdir: Path
    computed: int = 0
    reused: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def label(
        self, atoms: Atoms, *, check: str, name: str, origin: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The stored label of ``atoms`` (computed now if needed); None if it failed.

        Parameters
        ----------
        atoms
            The configuration.
        check
            Which check asks (``dimers``, ``eos``, ``transfer``): origin and subdirectory.
        name
            Short name of the configuration for its calculation directory.
        origin
            More provenance for the structure's ``origin``.
        """
        store, campaign = self.ctx.store, self.ctx.campaign
        key = structure_key(atoms)
        store.add_structures(
            campaign,
            [atoms],
            [key],
            iteration=self.iteration,
            status=VALIDATION_STATUS,
            origins=[{"kind": "validation", "check": check, **plain(origin)}],
        )
        parameters_hash = self.labeler.parameters_hash()
        existing = store.label(key, parameters_hash)
        if existing is not None and existing.get("ok"):  # this campaign's, or another's
            self.reused += 1
            doc = store.structure(campaign, key)
            if doc["status"] == VALIDATION_STATUS and doc.get("label_id") != existing["_id"]:
                store.set_status(campaign, [key], VALIDATION_STATUS, label_id=existing["_id"])
            return existing
        workdir = self.workdir / check / f"{name}-{key[:12]}"
        try:
            result = self.labeler.label(atoms, workdir)
        except LabelingError as exc:
            self.failed += 1
            self.errors.append(f"{check} {name}: {exc}")
            log.warning("validation %s %s: reference calculation failed: %s", check, name, exc)
            failure = failure_document(
                self.labeler,
                self.ctx.settings,
                error=str(exc),
                attempts=list(getattr(exc, "attempts", [])),
                host=socket.gethostname(),
                provenance={"workdir": str(workdir)},
            )
            self._record(key, {"status": "failed", "failure": failure})
            return None
        self.computed += 1
        label = {**result.to_doc(), "workdir": str(workdir)}
        self._record(key, {"status": "ok", "label": label, "done_status": VALIDATION_STATUS})
        return store.label(key, parameters_hash)

    def _record(self, key: str, outcome: dict[str, Any]) -> None:
        """Store an outcome; the structure's status stays what it was (``validation``)."""
        store, campaign = self.ctx.store, self.ctx.campaign
        status = store.structure(campaign, key)["status"]
        if status == VALIDATION_STATUS:
            record_label_outcome(store, campaign, self.iteration, key, outcome)
            if outcome["status"] != "ok":  # record_label_outcome marked it failed
                store.set_status(
                    campaign, [key], VALIDATION_STATUS, reason=outcome["failure"]["error"]
                )
        elif outcome["status"] == "ok":  # e.g. a seed frame: add its label, keep its status
            store.add_label(
                key,
                {**outcome["label"], "campaign": campaign, "iteration": self.iteration, "ok": True},
            )


@dataclass
class ValidationRun:
    """The inputs every check reads, computed once per validation.

    Attributes
    ----------
    ctx
        Store, campaign config, settings, work directory.
    calc
        The final committee (committee mean, ``energy_std``/``max_force_dev`` in its results).
    models
        The final committee's model records.
    structures
        The campaign's initial structures.
    training_frames
        Every labeled frame of the campaign (what the final committee was trained on).
    references
        The reference calculations of this validation.
    """

    ctx: StepContext
    calc: Any
    models: list[dict[str, Any]]
    structures: list[InitialStructure]
    training_frames: list[Atoms]
    references: ReferenceLabels
    _shortest: dict[tuple[str, str], float] | None = field(default=None, init=False, repr=False)

    @property
    def config(self) -> Any:
        """The campaign's ``validation`` section."""
        return self.ctx.config.validation

    @property
    def r_max_A(self) -> float:
        """The committee's cutoff radius (Å)."""
        return float(self.calc.models[0].r_max)

    def shortest_training_distances_A(self) -> dict[tuple[str, str], float]:
        """Shortest distance of each element pair in the training data (Å), within the cutoff."""
        if self._shortest is None:
            self._shortest = shortest_pair_distances_A(self.training_frames, cutoff_A=self.r_max_A)
        return self._shortest

    def largest_structure(self) -> InitialStructure:
        """The initial structure with the most atoms (the first of equals)."""
        if not self.structures:
            raise ValidationRunError("the campaign has no initial structure")
        return max(self.structures, key=lambda s: (len(s.atoms), -s.index))

    def trust_hi(self) -> float:
        """Upper edge of the trust window: the last iteration's, else the configured one."""
        for doc in reversed(self.ctx.store.iteration_docs(self.ctx.campaign)):
            if doc.get("trust_hi_eV_A") is not None:
                return float(doc["trust_hi_eV_A"])
        return float(self.ctx.config.selection.fixed_window()[1])
