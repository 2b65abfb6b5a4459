"""`alflow validate` on a real (tiny) final committee of an EMT copper campaign.

One module-scoped store: a 4-atom Cu campaign whose seed and held-out frames
are labeled with EMT, two tiny MACE members trained side by side as the
final fit (``iteration: "final"``) and recorded with ``finalize_fit``. The
validation runs once on it with a reduced ``validation`` section (short MD,
few points), and once more through the CLI, which must reuse every label.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alflow.config import CampaignConfig
from alflow.errors import AlflowError
from alflow.settings import Settings
from alflow.steps.context import StepContext
from alflow.store.store import FINAL
from alflow.structures import build_initial_structures, holdout_frames, seed_frames, structure_key
from alflow.validation.common import repeat_to
from alflow.validation.dimers import monotonic_below, pair_energy_curve

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))


def needs_mace(test: Any) -> Any:
    """Marks of the tests on the trained committee (it trains in ~20-40 s on 2 cores)."""
    for mark in (
        pytest.mark.mace,
        pytest.mark.slow,
        pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed"),
    ):
        test = mark(test)
    return test


CAMPAIGN = {
    "name": "val-cu",
    "initial": {
        "structures": [{"kind": "bulk", "symbol": "Cu", "a_A": 3.61, "cubic": True}],
        "n_rattled": 7,
        "n_holdout": 2,
        "rattle_stdev_A": 0.05,
        "strain_max": 0.02,
    },
    "committee": {
        "members": 2,
        "model": {"channels": 8, "max_L": 0, "r_max_A": 4.0, "num_interactions": 1},
        "training": {"epochs": 4, "batch_size": 2, "valid_fraction": 0.25},
    },
    "exploration": {"temperatures_K": [300.0, 600.0], "sample_interval_steps": 5},
    "validation": {
        "dimer_min_A": 1.2,
        "dimer_points": 6,
        "dimer_reference_points": 2,
        "eos_points": 5,
        "eos_reference_points": 5,
        "md_time_ps": 0.02,
        "md_min_atoms": 8,
        "transfer_frames": 1,
        "transfer_min_atoms": 8,
        "transfer_equilibration_ps": 0.01,
        "transfer_spacing_ps": 0.01,
    },
}
PARTS = ("dimers", "eos", "md_stability", "holdout", "transfer")


# ----------------------------------------------------------------------------- cheap unit tests


def test_pair_energy_curve_is_the_dimer_energy() -> None:
    curve = pair_energy_curve(EMT(), "Cu", "Cu", [1.8, 2.2, 3.0])
    assert curve["energy_eV"].shape == (3,)
    assert np.all(np.isnan(curve["energy_std_eV"]))  # not a committee
    from ase import Atoms

    dimer = Atoms("Cu2", positions=[[0, 0, 0], [2.2, 0, 0]])
    dimer.calc = EMT()
    assert curve["energy_eV"][1] == pytest.approx(dimer.get_potential_energy(), abs=1e-9)


class _Dip(Calculator):
    """A dimer energy with a dip at 1.5 Å below its minimum at 2.5 Å."""

    implemented_properties = ["energy"]  # noqa: RUF012

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = float(np.linalg.norm(self.atoms.positions[1] - self.atoms.positions[0]))
        self.results = {"energy": (r - 2.5) ** 2 - np.exp(-((r - 1.5) ** 2) / 0.01)}


def test_monotonic_below_finds_a_dip() -> None:
    ok, where = monotonic_below(_Dip(), "Cu", "Cu", 2.4, 0.8)
    assert not ok and 1.5 < where[0] < where[1] < 1.8, where
    assert monotonic_below(_Dip(), "Cu", "Cu", 1.3, 0.8) == (True, [])


def test_repeat_to_grows_the_shortest_direction() -> None:
    from ase.build import bulk

    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    assert [len(repeat_to(cell, 8)[0]), repeat_to(cell, 8)[1]] == [8, [2, 1, 1]]
    atoms, repeats = repeat_to(cell, 8, more_than=32)
    assert len(atoms) > 32 and sorted(repeats) == [2, 2, 3]


def test_stored_configs_without_the_new_fields_still_load() -> None:
    old = {k: v for k, v in CAMPAIGN["validation"].items() if k != "transfer_spacing_ps"}
    config = CampaignConfig.model_validate({**CAMPAIGN, "validation": old})
    assert config.validation.transfer_spacing_ps > 0


# ----------------------------------------------------------------------------- the store


def _label_initial(ctx: StepContext) -> None:
    """Seed and held-out frames of the campaign, labeled with EMT; the E0s."""
    from alflow.steps.label import label_structure, reference_energies

    structures = build_initial_structures(ctx.config.initial)
    for frames, status in (
        (seed_frames(structures, ctx.config.initial, 0), "seed"),
        (holdout_frames(structures, ctx.config.initial, 0), "holdout"),
    ):
        keys = [structure_key(a) for a in frames]
        ctx.store.add_structures(
            ctx.campaign,
            frames,
            keys,
            iteration=0,
            status=status,
            origins=[{"kind": status}] * len(frames),
        )
        for key in keys:
            label_structure(ctx, 0, key)
    reference_energies(ctx, ["Cu"])


def _train_final(ctx: StepContext, root: Path) -> None:
    """Two tiny members on every label, side by side, stored as the final fit."""
    from alflow.committee import train_member
    from alflow.steps.final import finalize_fit

    frames = ctx.store.labeled_frames(ctx.campaign, ctx.parameters_hash)
    e0s = ctx.store.reference_energies(ctx.parameters_hash)
    committee = ctx.config.committee
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(
                train_member,
                frames,
                model=committee.model,
                training=committee.training,
                seed=m,
                workdir=root / f"m{m}",
                e0s_eV=e0s,
                name=f"m{m}",
                threads=1,
            )
            for m in range(committee.members)
        ]
        members = [job.result() for job in jobs]
    for m, member in enumerate(members):
        ctx.store.put_model(ctx.campaign, FINAL, m, member.model_path, {"seed": m})
    assert finalize_fit(ctx)["status"] == "trained"


@pytest.fixture(scope="module")
def campaign(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepContext]:
    """A store with an EMT Cu campaign and its trained final committee."""
    import pymongo

    from alflow.store import open_store

    root = tmp_path_factory.mktemp("validation")
    db_name = f"alflow_{uuid.uuid4().hex[:10]}"
    _, store = open_store(mongo_uri, db_name=db_name)
    config = CampaignConfig.model_validate(CAMPAIGN)
    store.register_campaign(config)
    settings = Settings(store=mongo_uri, store_name=db_name, scratch_dir=str(root / "scratch"))
    ctx = StepContext(store=store, config=config, settings=settings, workdir=root / "work")
    _label_initial(ctx)
    _train_final(ctx, root / "train")
    yield ctx
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri)
    client.drop_database(db_name)
    client.close()


@pytest.fixture(scope="module")
def first(campaign: StepContext, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first validation (every reference calculation computed)."""
    from alflow.validation import validate_potential

    out = tmp_path_factory.mktemp("first") / "out"
    labels_before = campaign.store.labels.count_documents({})
    result = validate_potential(campaign, out_dir=out)
    return {"result": result, "out": out, "labels_before": labels_before}


# ----------------------------------------------------------------------------- validation


@needs_mace
def test_every_part_is_present(first: dict[str, Any], campaign: StepContext) -> None:
    result = first["result"]
    for part in PARTS:
        assert part in result and "error" not in result[part], result.get(part)
    (pair,) = result["dimers"]["pairs"]
    assert pair["pair"] == "Cu-Cu" and pair["distance_A"][-1] == pytest.approx(4.0)
    assert pair["energy_eV"][-1] == 0.0 and len(pair["energy_std_eV"]) == 6
    assert pair["shortest_training_distance_A"] > 2.0
    assert isinstance(pair["monotonic_below_data"], bool)
    assert len(pair["reference"]["distance_A"]) == 2
    (eos,) = result["eos"]["structures"]
    assert eos["a_kind"] == "cubic lattice constant" and eos["a_initial_A"] == 3.61
    assert 3.3 < eos["reference"]["a0_A"] < 3.7  # EMT copper: 3.59 Å
    assert eos["a0_error_A"] == pytest.approx(eos["committee"]["a0_A"] - eos["reference"]["a0_A"])
    md = result["md_stability"]
    assert md["temperature_K"] == 600.0 and md["n_atoms"] == 8 and md["steps"] == 10
    assert md["steps_done"] == 10 and md["steps_per_s"] > 0
    assert 0.0 <= md["in_window_fraction"] <= 1.0 and isinstance(md["stable"], bool)
    assert result["holdout"]["n_frames"] == 2
    transfer = result["transfer"]
    assert transfer["n_atoms"] == 8 > transfer["largest_training_atoms"]
    assert [r["temperature_K"] for r in transfer["temperatures"]] == [300.0, 600.0]
    for row in transfer["temperatures"]:
        assert row["n_frames"] == 1 and row["force_rmse_eV_A"] > 0
        assert row["strained"]["n_frames"] == 1
    summary = result["summary"]
    for key in (
        "dimer_monotonic_Cu-Cu",
        "eos_a0_committee_A",
        "eos_a0_reference_A",
        "eos_a0_error_A",
        "eos_b_committee_GPa",
        "md_steps_per_s",
        "md_stable",
        "md_in_window_fraction",
        "holdout_force_rmse_eV_A",
        "transfer_force_rmse_eV_A_300K",
        "transfer_force_rmse_eV_A_600K",
    ):
        assert key in summary, key
    assert campaign.store.validation(campaign.campaign)["summary"] == summary


@needs_mace
def test_figures_and_json_are_written(first: dict[str, Any]) -> None:
    out = first["out"]
    assert len(first["result"]["figures"]) == 4
    for name in first["result"]["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "validation.json").read_text())
    assert set(PARTS) <= set(saved) and saved["summary"] == first["result"]["summary"]


@needs_mace
def test_validation_frames_never_enter_the_training_data(
    first: dict[str, Any], campaign: StepContext
) -> None:
    store, name = campaign.store, campaign.campaign
    made = list(store.structures_of(name, where={"origin.kind": "validation"}))
    refs = first["result"]["references"]
    assert len(made) == refs["computed"] > 0  # dimers, E(V) and transfer frames
    assert {d["status"] for d in made} == {"validation"}
    assert all(store.label(d["key"], campaign.parameters_hash)["ok"] for d in made)
    training = {a.info["key"] for a in store.labeled_frames(name, campaign.parameters_hash)}
    assert training.isdisjoint(d["key"] for d in made)
    assert len(training) == store.final(name)["n_labels"]
    # the unstrained E(V) point is the seed frame itself: reused, still a seed
    assert refs["reused"] >= 1
    assert store.structures.count_documents({"campaign": name, "status": "seed"}) == 8


@needs_mace
def test_report_and_web_page_show_the_validation(
    first: dict[str, Any], campaign: StepContext, tmp_path: Path
) -> None:
    from alflow.monitor.live import LiveStore
    from alflow.monitor.webgui import create_app
    from alflow.report.write import write_report

    written = [p.name for p in write_report(campaign.store, campaign.campaign, tmp_path)]
    assert "val-cu-validation-dimers.png" in written and "val-cu-validation-eos.png" in written
    summary = (tmp_path / "val-cu-summary.md").read_text()
    assert "## Validation of the final committee" in summary and "eos_a0_error_A" in summary
    assert "](val-cu-validation-md.png)" in summary

    settings = campaign.settings
    live = LiveStore(settings.store, store_name=settings.store_name, launchpad_name="fw_none")
    client = create_app(live).test_client()
    page = client.get("/alflow/val-cu/").get_data(as_text=True)
    assert 'id="alflow-validation"' in page and "md_in_window_fraction" in page
    sources = re.findall(r'src="([^"]*validation-[^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        response = client.get(src.replace("&amp;", "&"))
        assert response.status_code == 200 and response.data.startswith(b"\x89PNG")
    assert client.get("/alflow/val-cu/validation-nope.png").status_code == 404


# ----------------------------------------------------------------------------- the command


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``alflow <argv>`` with the validate command registered, as alflow.cli.main runs it."""
    from alflow.validation.commands import register

    parser = argparse.ArgumentParser(prog="alflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        rc = int(args.func(args))
    except AlflowError as exc:
        print(f"alflow: error: {exc}", file=sys.stderr)
        rc = 2
    out, err = capsys.readouterr()
    return rc, out, err


@needs_mace
def test_second_run_reuses_every_label_and_prints_json(
    first: dict[str, Any],
    campaign: StepContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from alflow.labeling.emt import EMTLabeler

    def no_calculation(self: Any, atoms: Any, workdir: Path) -> Any:
        raise AssertionError("a reference calculation ran again")

    monkeypatch.setattr(EMTLabeler, "label", no_calculation)
    monkeypatch.setenv("ALFLOW_STORE_NAME", campaign.settings.store_name)
    labels = campaign.store.labels.count_documents({})
    argv = ["validate", "--campaign", "val-cu", "--store", campaign.settings.store]
    rc, out, err = _cli([*argv, "--out", str(tmp_path / "again"), "--json"], capsys)
    assert rc == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert set(PARTS) <= set(last)
    assert last["references"]["computed"] == 0 and last["references"]["failed"] == 0
    assert all(row["frames_reused"] for row in last["transfer"]["temperatures"])
    assert campaign.store.labels.count_documents({}) == labels
    assert last["transfer"]["temperatures"][0]["force_rmse_eV_A"] == pytest.approx(
        first["result"]["transfer"]["temperatures"][0]["force_rmse_eV_A"]
    )
    assert "Dimers" in out and "MD stability" in out
    rc, _, err = _cli([*argv, "--out", str(tmp_path / "again")], capsys)
    assert rc == 2 and "not empty" in err and "--force" in err


@needs_mace
def test_missing_final_fit_and_unknown_campaign_are_one_line_errors(
    campaign: StepContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = CampaignConfig.model_validate({**CAMPAIGN, "name": "val-unfinished"})
    campaign.store.register_campaign(other)
    monkeypatch.setenv("ALFLOW_STORE_NAME", campaign.settings.store_name)
    store = ["--store", campaign.settings.store, "--out", str(tmp_path / "x")]
    for name, expected in (("val-unfinished", "no final fit"), ("nope", "no campaign 'nope'")):
        rc, out, err = _cli(["validate", "--campaign", name, *store], capsys)
        assert rc == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("alflow: error:") and expected in err
    assert not (tmp_path / "x").exists()
