"""Validation of a campaign's product, the final committee: ``alflow validate``.

One module per check, each a function of a
:class:`~alflow.validation.common.ValidationRun`:

- :mod:`~alflow.validation.dimers`: dimer curves of every element pair, and
  whether they rise below the shortest distance the data reached;
- :mod:`~alflow.validation.eos`: E(V), lattice constant and bulk modulus
  against the reference method;
- :mod:`~alflow.validation.md`: a long committee-mean MD run at the hottest
  campaign temperature;
- :mod:`~alflow.validation.holdout`: errors on the held-out frames;
- :mod:`~alflow.validation.transfer`: errors on cells larger than any trained on.

:func:`validate_potential` runs them all (:mod:`~alflow.validation.run`);
:mod:`~alflow.validation.figures` draws the result; ``commands`` is the CLI.
Nothing here imports torch or mace at import time.
"""

from __future__ import annotations

from alflow.validation.common import ValidationRunError
from alflow.validation.dimers import pair_energy_curve
from alflow.validation.run import CHECKS, validate_potential

__all__ = ["CHECKS", "ValidationRunError", "pair_energy_curve", "validate_potential"]
