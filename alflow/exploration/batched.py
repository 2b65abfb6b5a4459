"""Walkers in batches: several MD walkers, one batched committee call per step.

:func:`run_walkers_batched` runs each walker with
:func:`~alflow.exploration.walker.run_walker`, the one owner of the walker
logic (integrator, observers, stop reasons, frame sampling), in its own
thread with its own ASE integrator and seeds, exactly as it would run alone.
Each walker's calculator (:class:`BatchedWalkerCalculator`) does not evaluate
anything itself: it hands its request (positions, the members it needs,
stress or not) to a shared :class:`BatchEvaluator` and waits. When every
walker still running has a request waiting, the evaluator builds the graphs
of the new configurations and runs each member once on the batch of
structures that need it
(:meth:`~alflow.committee.CommitteeCalculator.run_members_batch`), then
hands each walker its own results. A walker that stops leaves the batch; the
others go on.

Walker *w* propagating member *m* asks for *m* at every step; at its
committee steps it asks for the other members on the graph of that step (no
rebuild), so full committee evaluations are batched too, grouped by member
with the propagation requests of the round. Results equal a walker's alone
up to floating-point round-off (each structure is its own graph in the
batch), so each walker stops where it would alone.

The threads only take turns: one batched evaluation runs at a time, while
every other walker waits for it (torch releases the GIL inside the models).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from alflow.committee.calculator import member_results
from alflow.committee.uncertainty import stress_wanted
from alflow.errors import ExplorationError
from alflow.exploration.options import WalkerOptions, resolve_options
from alflow.exploration.walker import WalkerResult, run_walker

__all__ = ["BatchEvaluator", "BatchWalker", "BatchedWalkerCalculator", "run_walkers_batched"]

logger = logging.getLogger(__name__)


@dataclass
class BatchWalker:
    """What differs between the walkers of a batch.

    Attributes
    ----------
    atoms
        Starting configuration (copied, never modified).
    temperature_K
        Thermostat target (K).
    seed
        Seeds the walker's velocities and Langevin noise (as in ``run_walker``).
    pressure_GPa
        External pressure for NPT (GPa).
    propagator
        The member that drives this walker's MD; None: the committee mean
        at every step.
    """

    atoms: Atoms
    temperature_K: float
    seed: int
    pressure_GPa: float = 0.0
    propagator: int | None = None


@dataclass
class _Request:
    """One walker's evaluation request of a round."""

    walker: int
    members: list[int]
    stress: bool
    atoms: Atoms | None = None  # a new configuration: its graph is built
    graph: Any = None  # or the graph of the walker's last configuration
    outputs: dict[int, Any] = field(default_factory=dict)
    error: BaseException | None = None
    done: bool = False


class BatchEvaluator:
    """Collects one request per running walker and evaluates them together.

    Parameters
    ----------
    committee
        A :class:`~alflow.committee.CommitteeCalculator` (its device, dtype
        and threads are used as they are).
    walkers
        Ids of the walkers that will submit; each must :meth:`leave` when done.

    Attributes
    ----------
    rounds
        Batched rounds evaluated so far.
    structures_evaluated
        Sum over rounds of the structures in the round.
    """

    def __init__(self, committee: Any, walkers: Iterable[int]) -> None:
        self.committee = committee
        self._active = set(walkers)
        self._pending: dict[int, _Request] = {}
        self._cond = threading.Condition()
        self.rounds = 0
        self.structures_evaluated = 0

    def submit(
        self,
        walker: int,
        *,
        members: Sequence[int],
        stress: bool,
        atoms: Atoms | None = None,
        graph: Any = None,
    ) -> tuple[Any, dict[int, Any]]:
        """Wait for this walker's results in the next batched round.

        Parameters
        ----------
        walker
            The submitting walker (one request at a time).
        members
            Members to run on its structure.
        stress
            Compute the stress too.
        atoms, graph
            The configuration to evaluate (its graph is built), or the graph
            of an earlier request at the same configuration.

        Returns
        -------
        (graph, outputs)
            The structure's graph and member index → (energy, forces, stress).

        Raises
        ------
        ExplorationError
            The structure cannot be evaluated (an unknown element).
        RuntimeError
            The batched model call failed (the message says why).
        """
        request = _Request(walker, list(members), bool(stress), atoms=atoms, graph=graph)
        with self._cond:
            if walker not in self._active or walker in self._pending:
                raise RuntimeError(f"internal: walker {walker} cannot submit now")
            self._pending[walker] = request
            self._run_if_complete()
            while not request.done:
                self._cond.wait()
        if request.error is not None:
            error = request.error
            if isinstance(error, ExplorationError):
                raise ExplorationError(str(error)) from error
            # run_walker names the step: "walker failed at step N: RuntimeError: ..."
            raise RuntimeError(
                f"batched evaluation failed: {type(error).__name__}: {error}"
            ) from error
        return request.graph, request.outputs

    def leave(self, walker: int) -> None:
        """The walker is done: later rounds no longer wait for it."""
        with self._cond:
            self._active.discard(walker)
            self._run_if_complete()

    def _run_if_complete(self) -> None:
        """Evaluate the round once every active walker has a request (lock held)."""
        if not self._pending or len(self._pending) < len(self._active):
            return
        requests = sorted(self._pending.values(), key=lambda r: r.walker)
        self._pending = {}
        try:
            self._evaluate(requests)
        finally:
            for request in requests:
                request.done = True
            self.rounds += 1
            self.structures_evaluated += len(requests)
            self._cond.notify_all()

    def _evaluate(self, requests: list[_Request]) -> None:
        """Build the new graphs and run every member once on the structures that need it."""
        ready = []
        for request in requests:
            if request.atoms is not None:
                try:
                    request.graph = self.committee.graph_data(request.atoms)
                except Exception as exc:  # e.g. an element the committee does not know
                    request.error = exc
                    continue
            ready.append(request)
        try:
            outputs = self.committee.run_members_batch(
                [r.graph for r in ready], [r.members for r in ready], [r.stress for r in ready]
            )
        except Exception as exc:  # a model failure: every walker of the round sees it
            for request in ready:
                request.error = exc
            return
        for request, output in zip(ready, outputs, strict=True):
            request.outputs = output


class BatchedWalkerCalculator(Calculator):
    """One walker's committee calculator whose evaluations go through a :class:`BatchEvaluator`.

    It behaves as :class:`~alflow.committee.CommitteeCalculator` with the
    same ``propagator`` and ``always_stress`` (same results, same
    :meth:`evaluate_committee`), so :func:`~alflow.exploration.walker.run_walker`
    drives it unchanged.

    Parameters
    ----------
    evaluator
        The batch's evaluator.
    walker
        This walker's id in the evaluator.
    propagator
        Member index that drives the MD, or None for the committee mean.
    always_stress
        Compute stress with every call on 3D-periodic cells (NPT).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(
        self,
        evaluator: BatchEvaluator,
        walker: int,
        *,
        propagator: int | None,
        always_stress: bool = False,
    ) -> None:
        super().__init__()
        n_members = evaluator.committee.n_members
        if propagator is not None and not 0 <= propagator < n_members:
            raise ValueError(f"propagator must be a member index < {n_members}, got {propagator}")
        self.evaluator = evaluator
        self.walker = walker
        self.n_members = n_members
        self.propagator = propagator
        self.always_stress = always_stress
        self._graph: Any = None
        self._outputs: dict[int, Any] = {}

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Evaluate the propagating member (or the committee) in the next batched round."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = stress_wanted(atoms, properties, self.always_stress)
        members = list(range(self.n_members)) if self.propagator is None else [self.propagator]
        self._graph, outputs = self.evaluator.submit(
            self.walker, members=members, stress=want_stress, atoms=atoms
        )
        self._outputs = dict(outputs)
        if self.propagator is None:
            self.results = self.evaluator.committee.committee_results(self._outputs)
            return
        self.results = member_results(self.propagator, *self._outputs[self.propagator])

    def evaluate_committee(self, atoms: Atoms) -> dict[str, Any]:
        """Committee results at ``atoms``, the missing members run in the next batched round.

        As :meth:`alflow.committee.CommitteeCalculator.evaluate_committee`:
        the other members run on the graph of the last calculation, and
        ``self.results`` is left as it is.
        """
        if self.calculation_required(atoms, ["forces"]) or self._graph is None:
            self.calculate(atoms, ["energy", "forces"], all_changes)
        if self.propagator is None:
            return dict(self.results)
        missing = [m for m in range(self.n_members) if m not in self._outputs]
        if missing:
            want_stress = self._outputs[self.propagator][2] is not None
            _, outputs = self.evaluator.submit(
                self.walker, members=missing, stress=want_stress, graph=self._graph
            )
            self._outputs.update(outputs)
        return self.evaluator.committee.committee_results(self._outputs)


def run_walkers_batched(
    walkers: Sequence[BatchWalker],
    committee: Any,
    *,
    always_stress: bool | None = None,
    options: WalkerOptions | None = None,
    **option_fields: Any,
) -> list[WalkerResult]:
    """Run several walkers together, their structures evaluated in one batched call per step.

    Parameters
    ----------
    walkers
        Per walker: start, temperature, seed, pressure and propagating member.
    committee
        A :class:`~alflow.committee.CommitteeCalculator`; its device, dtype
        and threads are used (``settings.device`` "cuda" flows through it).
    always_stress
        Stress with every call on 3D-periodic cells; None: for NPT only.
    options
        What all walkers share (:class:`~alflow.exploration.options.WalkerOptions`).
    **option_fields
        Its fields one by one (``steps``, ``timestep_fs``, ``trust_hi_eV_A``,
        ...), instead of ``options`` or replacing those of ``options``, as
        :func:`~alflow.exploration.walker.run_walker` takes them.

    Returns
    -------
    list of WalkerResult
        In the order of ``walkers``; each as ``run_walker`` returns it alone
        (``wall_s`` is the walker's wall time inside the batch).

    Raises
    ------
    ExplorationError
        A walker failed (invalid arguments, a model failure); the message
        names the first failed walker of the batch. The others ran to their end.
    """
    options = resolve_options(options, option_fields)
    if always_stress is None:
        always_stress = options.ensemble == "npt"
    evaluator = BatchEvaluator(committee, range(len(walkers)))
    results: list[WalkerResult | None] = [None] * len(walkers)
    errors: list[BaseException | None] = [None] * len(walkers)

    def work(index: int) -> None:
        walker = walkers[index]
        try:
            calc = BatchedWalkerCalculator(
                evaluator, index, propagator=walker.propagator, always_stress=always_stress
            )
            results[index] = run_walker(
                walker.atoms,
                calc,
                temperature_K=walker.temperature_K,
                seed=walker.seed,
                pressure_GPa=walker.pressure_GPa,
                options=options,
            )
        except BaseException as exc:  # reported after every walker has finished
            errors[index] = exc
        finally:
            evaluator.leave(index)

    threads = [
        threading.Thread(target=work, args=(i,), name=f"alflow-walker-{i}", daemon=True)
        for i in range(len(walkers))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, error in enumerate(errors):
        if error is not None:
            raise ExplorationError(
                f"walker {index} of a batch of {len(walkers)}: {error}"
            ) from error
    logger.info(
        "%d walkers in %d batched rounds (%.1f structures per round)",
        len(walkers),
        evaluator.rounds,
        evaluator.structures_evaluated / max(evaluator.rounds, 1),
    )
    return [r for r in results if r is not None]
