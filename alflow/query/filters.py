"""Filters over the ``structures`` collection, validated when they are built.

A :class:`StructureQuery` holds every filter that ``alflow db find`` and the
Python API accept. It is checked up front (unknown status, malformed formula,
unknown element, a range with min > max are a :class:`~alflow.errors.ConfigError`).
Nothing here is Mongo: :mod:`alflow.store.query_filters` turns a query into the
store's indexed filters (:meth:`StructureQuery.mongo_filter` asks it).

Examples
--------
>>> q = StructureQuery(campaign="demo", formula="CuAl", status="labeled")
>>> q.mongo_filter()
{'campaign': 'demo', 'status': 'labeled', 'reduced_formula': 'AlCu'}
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from ase.data import chemical_symbols

from alflow.errors import ConfigError
from alflow.store.query_filters import UNCERTAINTY_FIELD, energy_bounds, structure_filter
from alflow.store.store import STATUSES

__all__ = [
    "UNCERTAINTY_FIELD",
    "StructureQuery",
    "hill_formula",
    "parse_formula",
    "parse_range",
]

_SYMBOLS = frozenset(chemical_symbols[1:])
_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def parse_formula(formula: str) -> Counter[str]:
    """Element counts of a formula such as ``Al2Cu`` or ``CuAl2`` (order free).

    Parameters
    ----------
    formula
        Element symbols each followed by an optional positive count. No
        parentheses, charges or spaces.

    Returns
    -------
    collections.Counter
        Count per element symbol.

    Raises
    ------
    ConfigError
        Empty or malformed formula, unknown element symbol, a zero count.
    """
    text = formula.strip()
    if not text:
        raise ConfigError("formula: empty formula")
    counts: Counter[str] = Counter()
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConfigError(
                f"formula '{formula}': malformed at '{text[position:]}' "
                "(write element symbols with counts, e.g. AlCu3 or Cu4)"
            )
        symbol, count = match.group(1), match.group(2)
        if symbol not in _SYMBOLS:
            raise ConfigError(f"formula '{formula}': unknown element '{symbol}'")
        number = int(count) if count else 1
        if number < 1:
            raise ConfigError(f"formula '{formula}': count of {symbol} must be positive")
        counts[symbol] += number
        position = match.end()
    return counts


def hill_formula(counts: Counter[str] | dict[str, int]) -> str:
    """Hill-order formula (C, H, then alphabetical; no C: all alphabetical).

    This is the order of ``ase.Atoms.get_chemical_formula(mode="hill")``,
    which the loop writes into ``formula`` and ``reduced_formula``.
    """
    symbols = sorted(counts)
    if "C" in counts:
        symbols = ["C"] + (["H"] if "H" in counts else []) + [s for s in symbols if s not in "CH"]
    return "".join(s + (str(counts[s]) if counts[s] != 1 else "") for s in symbols)


def parse_range(text: str, name: str) -> tuple[float | None, float | None]:
    """Parse ``MIN:MAX`` (either side may be empty) into two floats or None.

    Raises
    ------
    ConfigError
        Not of the form ``MIN:MAX``, a non-number, or MIN > MAX.
    """
    if text.count(":") != 1:
        raise ConfigError(f"{name} '{text}': expected MIN:MAX, e.g. -4.2:-3.9 or -4.2: or :-3.9")
    low_text, high_text = (part.strip() for part in text.split(":"))
    try:
        low = float(low_text) if low_text else None
        high = float(high_text) if high_text else None
    except ValueError:
        raise ConfigError(f"{name} '{text}': MIN and MAX must be numbers") from None
    _check_range(low, high, name, "")
    return low, high


def _check_range(low: float | None, high: float | None, name: str, unit: str) -> None:
    for value in (low, high):
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{name}: {value} is not a finite number")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{name}: minimum {low:g}{unit} is larger than maximum {high:g}{unit}")


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item and item.strip())


@dataclass(frozen=True)
class StructureQuery:
    """Filters over structures; every field is optional and they combine with AND.

    Parameters
    ----------
    campaign
        Campaign name.
    formula
        A formula in any element order. If its counts have no common divisor
        (``AlCu3``, ``Cu``) it matches the *reduced* formula, so every cell
        size matches; otherwise (``Cu4``, ``Al2Cu6``) it matches the cell's
        full formula exactly.
    elements
        Element symbols (list or ``"Al,Cu"``): structures containing all of them.
    iteration
        The iteration that first saw the structure.
    status
        One status or several (list or ``"labeled,seed"``), from
        :data:`alflow.store.STATUSES`.
    min_uncertainty_eV_A, max_uncertainty_eV_A
        Bounds (inclusive) on the committee's largest per-atom force deviation
        ``uncertainty.max_force_dev_eV_A`` (eV/Å). Structures without one
        (seeds) never match a bound.
    min_energy_eV_per_atom, max_energy_eV_per_atom
        Bounds (inclusive) on the reference (DFT) total energy divided by the
        number of atoms, ``labels.energy_eV / structures.n_atoms`` (eV/atom),
        of the label the structure points to (``label_id``). Only structures
        with a successful label match.
    labeled_only
        Only structures with a successful label (``label_id`` set).
    limit
        At most this many results (None: all).

    Raises
    ------
    ConfigError
        Any invalid filter, with a message naming it.
    """

    campaign: str | None = None
    formula: str | None = None
    elements: tuple[str, ...] = ()
    iteration: int | None = None
    status: tuple[str, ...] = ()
    min_uncertainty_eV_A: float | None = None
    max_uncertainty_eV_A: float | None = None
    min_energy_eV_per_atom: float | None = None
    max_energy_eV_per_atom: float | None = None
    labeled_only: bool = False
    limit: int | None = None
    _formula_match: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "status", _as_tuple(self.status))
        unknown = [s for s in self.status if s not in STATUSES]
        if unknown:
            raise ConfigError(f"unknown status '{unknown[0]}' (known: {', '.join(STATUSES)})")
        elements = _as_tuple(self.elements)
        bad = [e for e in elements if e not in _SYMBOLS]
        if bad:
            raise ConfigError(f"elements: unknown element symbol '{bad[0]}'")
        set_(self, "elements", tuple(sorted(set(elements))))
        if self.formula is not None:
            counts = parse_formula(self.formula)
            divisor = reduce(math.gcd, counts.values())
            if divisor == 1:
                set_(self, "_formula_match", ("reduced_formula", hill_formula(counts)))
            else:
                set_(self, "_formula_match", ("formula", hill_formula(counts)))
        if self.campaign is not None and not str(self.campaign).strip():
            raise ConfigError("campaign: empty name")
        if self.iteration is not None:
            if isinstance(self.iteration, bool) or int(self.iteration) != self.iteration:
                raise ConfigError(f"iteration: {self.iteration!r} is not an integer")
            if self.iteration < 0:
                raise ConfigError(f"iteration: {self.iteration} is negative")
            set_(self, "iteration", int(self.iteration))
        if self.limit is not None:
            if isinstance(self.limit, bool) or int(self.limit) != self.limit or self.limit < 0:
                raise ConfigError(f"limit: {self.limit!r} is not a non-negative integer")
            set_(self, "limit", int(self.limit) or None)
        _check_range(
            self.min_uncertainty_eV_A, self.max_uncertainty_eV_A, "uncertainty range", " eV/Å"
        )
        for value in (self.min_uncertainty_eV_A, self.max_uncertainty_eV_A):
            if value is not None and value < 0:
                raise ConfigError(f"uncertainty range: {value:g} eV/Å is negative")
        _check_range(
            self.min_energy_eV_per_atom, self.max_energy_eV_per_atom, "energy range", " eV/atom"
        )

    # ------------------------------------------------------------------ derived
    @property
    def formula_match(self) -> tuple[str, str] | None:
        """``(field, hill formula)`` the formula filter compares, or None."""
        return self._formula_match

    @property
    def has_energy_range(self) -> bool:
        """True when an energy bound needs the structure's label."""
        return self.min_energy_eV_per_atom is not None or self.max_energy_eV_per_atom is not None

    @property
    def has_uncertainty_range(self) -> bool:
        """True when an uncertainty bound is set."""
        return self.min_uncertainty_eV_A is not None or self.max_uncertainty_eV_A is not None

    def energy_bounds(self) -> dict[str, float]:
        """The store's bounds on energy per atom (eV/atom): :func:`~alflow.store.query_filters.energy_bounds`."""
        return energy_bounds(self)

    def mongo_filter(self) -> dict[str, Any]:
        """The store's filter on ``structures``: :func:`~alflow.store.query_filters.structure_filter`."""
        return structure_filter(self)
