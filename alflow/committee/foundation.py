"""Start every committee member from a foundation model (``committee.foundation_model``).

The file is a local MACE model: a MACE-MP model, or a member of another
campaign's export (``memberMM.model`` beside ``model_card.json`` and
``train.xyz``). Nothing is downloaded. With mace-torch 0.3.16:

- :func:`inspect_foundation` reads the file in a helper process (mace's
  import changes process-wide torch state); :func:`check_foundation` turns
  what mace would crash on deep in its subprocess into one line naming the
  file: missing, not a MACE model, not a ``ScaleShiftMACE``, missing
  elements, ``r_max`` other than ``committee.model.r_max_A``.
- :func:`prepare_foundation` writes the start file: the foundation without
  alflow's ZBL prior (any pair repulsion when alflow puts its own on after
  training), single-head E0s stored 1-d (mace's ``E0s foundation`` indexes a
  0-d tensor for one-element ``(1, 1)`` E0s).
- ``--foundation_model`` builds the model from the file's architecture
  (it wins over ``committee.model``) and loads every weight, readouts
  included, filtered to the campaign's elements; nothing is frozen.
- Multihead replay where there is replay data: the export's ``train.xyz``
  (sha256 checked against the card), subsampled per member seed to the size
  of the training set (at least :data:`MIN_REPLAY_FRAMES`), is
  ``--pt_train_file`` with ``--multiheads_finetuning True``: a ``pt_head``
  keeps fitting the donor's labels beside the new ``Default`` head.
  ``--force_mh_ft_lr True`` keeps the campaign's lr and EMA (mace's
  multihead lr 1e-4 and EMA decay 0.99999 barely move a model in a few
  hundred steps). The member's MACE job (:mod:`alflow.committee.mace_job`)
  then keeps the ``Default`` head only (:func:`single_head_model`). A file
  without replay data (MACE-MP) is fine-tuned plainly, said in the log and
  the record.
- Members differ by their seed (split, batch order, replay subsample) and,
  where configured, their bootstrap resample.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alflow.committee.helper_run import run_helper
from alflow.committee.repulsion import ZBL_SCREENING_EXPONENT, ZBL_SCREENING_PREFACTOR, load_model
from alflow.config import CampaignConfig, MaceModelConfig, TrainingConfig
from alflow.errors import AlflowError, ConfigError, TrainingError
from alflow.workcache import sha256_file

__all__ = [
    "FoundationInfo",
    "FoundationStart",
    "check_campaign_foundation",
    "check_foundation",
    "foundation_argv",
    "foundation_path",
    "inspect_foundation",
    "prepare_foundation",
    "single_head_model",
]

log = logging.getLogger(__name__)

KEY = "committee.foundation_model"
#: The replay set of a member holds at least this many frames (when the donor has them).
MIN_REPLAY_FRAMES = 8
#: The only class mace 0.3.16 fine-tunes with ``--model ScaleShiftMACE``.
SUPPORTED_CLASS = "ScaleShiftMACE"
REPLAY_FILE = "replay.xyz"
_HELPER = ("-m", "alflow.committee.foundation")


@dataclass(frozen=True)
class FoundationInfo:
    """What a foundation file is (read by :func:`inspect_foundation`).

    ``head`` is the head fine-tuned from (``Default`` if there is one) and
    ``e0s_eV`` its isolated-atom energies by element; ``repulsion`` is
    ``"alflow"`` (alflow's ZBL prior), ``"mace"`` (another pair repulsion)
    or None; ``card_name`` the campaign of a ``model_card.json`` beside the
    file, ``replay_file`` its checked ``train.xyz``.
    """

    path: Path
    sha256: str
    model_class: str
    r_max_A: float
    elements: list[str]
    heads: list[str]
    head: str
    dtype: str
    n_parameters: int
    e0s_eV: dict[str, float]
    architecture: dict[str, Any]
    repulsion: str | None
    card_name: str | None = None
    replay_file: Path | None = None


@dataclass(frozen=True)
class FoundationStart:
    """A member's start (made by :func:`prepare_foundation`).

    ``model_path`` is the file mace loads; ``replay_path`` the member's
    replay subsample of ``n_replay`` frames (None: plain fine-tuning, and
    ``note`` says why).
    """

    info: FoundationInfo
    model_path: Path
    replay_path: Path | None
    n_replay: int = 0
    note: str = ""

    def record(self) -> dict[str, Any]:
        """JSON record for the member's hyperparameters (and the export's model card)."""
        info = self.info
        return {
            "file": str(info.path),
            "sha256": info.sha256,
            "card_name": info.card_name,
            "model_class": info.model_class,
            "r_max_A": info.r_max_A,
            "elements": info.elements,
            "head": info.head,
            "architecture": info.architecture,
            "repulsion_stripped": info.repulsion,
            "multihead_replay": self.replay_path is not None,
            "replay_file": str(info.replay_file) if info.replay_file else None,
            "n_replay": self.n_replay,
            "note": self.note or None,
        }


def foundation_path(config: CampaignConfig) -> Path | None:
    """``committee.foundation_model`` as an absolute path (relative: to the campaign's directory)."""
    path = config.committee.foundation_model
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(config.base_dir) / path).resolve()


# --------------------------------------------------------------------------- inspection


def _card_and_replay(path: Path) -> tuple[str | None, Path | None]:
    """Campaign name of a ``model_card.json`` beside ``path`` and its checked ``train.xyz``."""
    card_path = path.parent / "model_card.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, None
    if not isinstance(card, dict):
        return None, None
    name = card.get("campaign")
    data_name = ((card.get("training_data") or {}).get("file")) or "train.xyz"
    replay = path.parent / str(data_name)
    expected = ((card.get("files") or {}).get(str(data_name)) or {}).get("sha256")
    if not replay.is_file():
        return name, None
    if expected and sha256_file(replay) != expected:
        log.warning("%s does not match its model card's sha256: not used for replay", replay)
        return name, None
    return name, replay


def inspect_foundation(
    path: Path,
    *,
    out_path: Path | None = None,
    strip: bool = False,
    error: type[AlflowError] = ConfigError,
) -> FoundationInfo:
    """Load a foundation file in a helper process and say what it is.

    Parameters
    ----------
    path
        The file.
    out_path
        Also write the model there (the start file), without pair repulsion
        if it carries alflow's prior or ``strip``.
    strip
        Take any pair repulsion off in ``out_path``.
    error
        The error class raised (ConfigError at submission, TrainingError in
        the train step).

    Raises
    ------
    error
        Missing file, or not a loadable MACE model.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{KEY}: {path}: file not found")
    args = [*_HELPER, "inspect", str(path)]
    if out_path is not None:
        args += [str(out_path), "strip" if strip else "keep"]
    stdout = run_helper(args, failure=f"{KEY}: {path}: not a loadable MACE model", error=error)
    facts = json.loads(stdout.strip().splitlines()[-1])
    card_name, replay = _card_and_replay(path)
    return FoundationInfo(
        path=path.resolve(),
        sha256=sha256_file(path),
        card_name=card_name,
        replay_file=replay,
        **facts,
    )


def check_foundation(
    info: FoundationInfo,
    *,
    elements: Iterable[str],
    model: MaceModelConfig,
    error: type[AlflowError] = ConfigError,
) -> None:
    """Raise one clear line for every incompatibility mace would crash on.

    Parameters
    ----------
    info
        The foundation file.
    elements
        The campaign's elements.
    model
        The campaign's ``committee.model`` (its ``r_max_A`` must be the file's).
    error
        The error class raised.
    """
    where = f"{KEY}: {info.path}"
    if info.model_class != SUPPORTED_CLASS:
        raise error(
            f"{where}: is a {info.model_class}; alflow fine-tunes {SUPPORTED_CLASS} models "
            "(MACE-MP and alflow exports are)"
        )
    needed = sorted(set(elements))
    missing = [s for s in needed if s not in info.elements]
    if missing:
        raise error(
            f"{where}: has no {', '.join(missing)} (its elements: {' '.join(info.elements)}; "
            f"the campaign needs {' '.join(needed)})"
        )
    if abs(info.r_max_A - float(model.r_max_A)) > 1e-6:
        raise error(
            f"{where}: r_max {info.r_max_A:g} Å differs from committee.model.r_max_A "
            f"{float(model.r_max_A):g} Å: set committee.model.r_max_A: {info.r_max_A:g} "
            "(a fine-tuned model keeps its foundation's cutoff)"
        )


def check_campaign_foundation(
    config: CampaignConfig, elements: Iterable[str]
) -> FoundationInfo | None:
    """The submission-time check of ``committee.foundation_model`` (ConfigError), None if unset."""
    path = foundation_path(config)
    if path is None:
        return None
    info = inspect_foundation(path, error=ConfigError)
    check_foundation(info, elements=elements, model=config.committee.model, error=ConfigError)
    return info


# --------------------------------------------------------------------------- training


def _write_replay(info: FoundationInfo, out: Path, n_train: int, seed: int) -> int:
    """A seeded subsample of the donor's labels (no IsolatedAtom frames) as ``out``."""
    from ase.io import read, write

    frames = [
        a
        for a in read(info.replay_file, index=":", format="extxyz")
        if a.info.get("config_type") != "IsolatedAtom" and len(a) > 1
    ]
    n = min(len(frames), max(n_train, MIN_REPLAY_FRAMES))
    if n < 2:
        return 0
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(frames), size=n, replace=False))
    write(out, [frames[i] for i in chosen], format="extxyz")
    return n


def prepare_foundation(
    path: Path,
    *,
    workdir: Path,
    name: str,
    elements: Sequence[str],
    model: MaceModelConfig,
    training: TrainingConfig,
    seed: int,
    n_train: int,
) -> FoundationStart:
    """Check the foundation and write the member's start file (and replay set) into ``workdir``.

    Parameters
    ----------
    path
        The foundation file.
    workdir, name
        The member's work directory and model name: the start file is
        ``<name>.foundation.model``, the replay set ``<name>.replay.xyz``.
    elements, model
        The training frames' elements and ``committee.model`` (checked).
    training
        ``pair_repulsion``: any pair repulsion of the file is taken off
        (alflow's own prior is taken off always).
    seed, n_train
        The member's seed and training-set size (the replay subsample).

    Raises
    ------
    TrainingError
        As :func:`check_foundation`, one line naming the file.
    """
    start = Path(workdir) / f"{name}.foundation.model"
    info = inspect_foundation(
        Path(path), out_path=start, strip=training.pair_repulsion, error=TrainingError
    )
    check_foundation(info, elements=elements, model=model, error=TrainingError)
    replay = Path(workdir) / f"{name}.{REPLAY_FILE}"
    n_replay = _write_replay(info, replay, n_train, seed) if info.replay_file else 0
    if n_replay == 0:
        why = "no replay data beside it (an alflow export's train.xyz)"
        if info.replay_file is not None:
            why = f"fewer than 2 frames in {info.replay_file.name}"
        note = f"{info.path.name}: {why}: plain fine-tuning, no multihead replay"
        log.info("%s: %s", name, note)
        return FoundationStart(info=info, model_path=start, replay_path=None, note=note)
    log.info("%s: multihead fine-tuning, %d replay frames of %s", name, n_replay, info.replay_file)
    return FoundationStart(info=info, model_path=start, replay_path=replay, n_replay=n_replay)


def foundation_argv(start: FoundationStart) -> list[str]:
    """mace ``run_train`` options of a foundation start (``--foundation_model`` comes apart)."""
    argv = ["--foundation_head", start.info.head] if len(start.info.heads) > 1 else []
    if start.replay_path is None:
        return [*argv, "--multiheads_finetuning", "False"]
    return [
        *argv,
        "--multiheads_finetuning", "True",
        "--pt_train_file", str(Path(start.replay_path).resolve()),
        "--force_mh_ft_lr", "True",
    ]  # fmt: skip


# --------------------------------------------------------------------------- helper process


def _repulsion_kind(model: Any) -> str | None:
    """``"alflow"`` for alflow's ZBL prior, ``"mace"`` for another pair repulsion, else None."""
    zbl = getattr(model, "pair_repulsion_fn", None)
    if zbl is None:
        return None
    prefactor = float(getattr(zbl, "a_prefactor", float("nan")))
    exponent = float(getattr(zbl, "a_exp", float("nan")))
    ours = (
        abs(prefactor - ZBL_SCREENING_PREFACTOR) < 1e-6
        and abs(exponent - ZBL_SCREENING_EXPONENT) < 1e-6
    )
    return "alflow" if ours else "mace"


def _architecture(model: Any) -> dict[str, Any]:
    """Channels, max_L, interactions and correlation of a ScaleShiftMACE (as stored)."""
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        return {}
    hidden = config["hidden_irreps"]
    correlation = config["correlation"]
    return {
        "channels": int(hidden.count("0e")) if hasattr(hidden, "count") else None,
        "max_L": int(hidden.lmax),
        "hidden_irreps": str(hidden),
        "num_interactions": int(config["num_interactions"]),
        "correlation": [int(c) for c in correlation]
        if isinstance(correlation, list | tuple)
        else int(correlation),
    }


def _inspect_model(path: Path, out: Path | None, strip: bool) -> dict[str, Any]:
    """Facts of a model file (run in the helper process); optionally its start file."""
    import torch
    from ase.data import chemical_symbols

    model = load_model(path)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_numbers"):
        raise SystemExit(f"{type(model).__name__} object, not a MACE model")
    zs = [int(z) for z in model.atomic_numbers.tolist()]
    heads = [str(h) for h in (getattr(model, "heads", None) or ["Default"])]
    non_pt = [h for h in heads if h != "pt_head"] or heads
    head = "Default" if "Default" in heads else non_pt[0]
    energies = model.atomic_energies_fn.atomic_energies.detach().reshape(-1, len(zs))
    row = energies[heads.index(head)] if energies.shape[0] == len(heads) else energies[0]
    repulsion = _repulsion_kind(model)
    if out is not None:
        if repulsion == "alflow" or (strip and repulsion is not None):
            del model.pair_repulsion
            del model.pair_repulsion_fn
        if energies.shape[0] == 1:  # 1-d E0s: mace's E0s "foundation" fails on (1, 1)
            model.atomic_energies_fn.atomic_energies = energies[0].clone()
        torch.save(model, out)
    return {
        "model_class": type(model).__name__,
        "r_max_A": float(model.r_max),
        "elements": [chemical_symbols[z] for z in zs],
        "heads": heads,
        "head": head,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "e0s_eV": {chemical_symbols[z]: float(e) for z, e in zip(zs, row.tolist(), strict=True)},
        "architecture": _architecture(model) if type(model).__name__ == SUPPORTED_CLASS else {},
        "repulsion": repulsion,
    }


def single_head_model(path: Path, out: Path) -> Path:
    """Write a multihead model with its ``Default`` head only (mace's ``remove_pt_head``).

    Runs in a process that may import mace (the member's MACE job).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import torch
    from mace.tools.scripts_utils import remove_pt_head

    model = load_model(path)
    heads = list(getattr(model, "heads", None) or [])
    if len(heads) > 1:
        model = remove_pt_head(model, "Default" if "Default" in heads else None)
    torch.save(model, out)
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``inspect IN [OUT strip|keep]``: the helper process (prints one JSON line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[0] == "inspect":
        out = Path(args[2]) if len(args) > 2 else None
        facts = _inspect_model(Path(args[1]), out, len(args) > 3 and args[3] == "strip")
        print(json.dumps(facts))
    else:
        raise SystemExit(f"unknown command {args[0]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
