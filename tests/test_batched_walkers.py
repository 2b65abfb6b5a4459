"""Walkers in batches stop, sample and store exactly as walkers run one by one.

A module-scoped real MACE committee (3 tiny members, 16 channels, trained in
subprocesses on EMT copper as in test_committee_mace) is evaluated in
float64, so a walker's batched and unbatched trajectories agree to
round-off: same stop step and reason, same frames, positions to 1e-8 Å.
The builder tests need no models.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from alflow.config import CampaignConfig, MaceModelConfig, TrainingConfig
from alflow.errors import ExplorationError
from alflow.testing import A_CU_A, copper_frames, train_side_by_side

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))


def needs_mace(test: Any) -> Any:
    """Marks of the tests that use the shared committee (~30-60 s to train on 2 cores)."""
    skip = pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed")
    return pytest.mark.mace(pytest.mark.slow(skip(test)))


MODEL = MaceModelConfig(channels=16, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2)
TRAINING = TrainingConfig(epochs=6, batch_size=4, valid_fraction=0.2)
SHARED = {
    "timestep_fs": 2.0,
    "min_distance_A": 1.5,
    "max_temperature_factor": 3.0,
    "committee_interval_steps": 5,
}


def cell(rattle_A: float, seed: int, scale: float = 1.0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=A_CU_A * scale, cubic=True).repeat((2, 2, 2))
    atoms.rattle(rattle_A, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("batched_committee")
    jobs = [(copper_frames(16), seed) for seed in range(3)]
    return [
        m.model_path for m in train_side_by_side(jobs, model=MODEL, training=TRAINING, root=root)
    ]


def committee(paths: list[Path], **options: Any) -> Any:
    from alflow.committee import load_committee

    return load_committee(paths, dtype="float64", threads=1, **options)


def walkers_nvt() -> list[Any]:
    from alflow.exploration.batched import BatchWalker

    return [
        BatchWalker(cell(0.02, 0), 300.0, seed=11, propagator=0),  # runs to the end
        BatchWalker(cell(0.02, 1), 600.0, seed=12, propagator=1),  # runs to the end
        BatchWalker(cell(0.08, 2), 50.0, seed=13, propagator=2),  # heats up: temperature stop
        BatchWalker(cell(0.02, 3, 0.95), 2000.0, seed=14, propagator=0),  # uncertainty stop
    ]


def one_by_one(paths: list[Path], walkers: list[Any], **options: Any) -> list[Any]:
    from alflow.exploration import run_walker

    results = []
    for w in walkers:
        calc = committee(
            paths, propagator=w.propagator, always_stress=options.get("ensemble") == "npt"
        )
        results.append(
            run_walker(
                w.atoms,
                calc,
                temperature_K=w.temperature_K,
                seed=w.seed,
                pressure_GPa=w.pressure_GPa,
                **options,
            )
        )
    return results


def assert_same(alone: list[Any], batched: list[Any]) -> None:
    for a, b in zip(alone, batched, strict=True):
        assert b.stop_reason == a.stop_reason
        assert b.steps_done == a.steps_done
        assert b.committee_evaluations == a.committee_evaluations
        assert [f.step for f in b.frames] == [f.step for f in a.frames]
        assert [f.stopped for f in b.frames] == [f.stopped for f in a.frames]
        for fa, fb in zip(a.frames, b.frames, strict=True):
            np.testing.assert_allclose(fb.atoms.positions, fa.atoms.positions, rtol=0, atol=1e-8)
            np.testing.assert_allclose(fb.atoms.cell[:], fa.atoms.cell[:], rtol=0, atol=1e-8)
            np.testing.assert_allclose(fb.forces_eV_A, fa.forces_eV_A, rtol=0, atol=1e-8)
            assert fb.max_force_dev_eV_A == pytest.approx(fa.max_force_dev_eV_A, abs=1e-9)
            assert fb.energy_eV == pytest.approx(fa.energy_eV, abs=1e-8)


def _trust_hi_between(trace: list[Any]) -> float:
    """A trust_hi the last walker crosses mid-run while the others stay below it."""
    others = max(f.max_force_dev_eV_A for r in trace[:-1] for f in r.frames)
    above = [f.max_force_dev_eV_A for f in trace[-1].frames if f.max_force_dev_eV_A > others]
    assert above and trace[-1].frames[0].max_force_dev_eV_A < others, "no clean crossing"
    return 0.5 * (others + above[0])


@needs_mace
def test_batched_nvt_walkers_stop_where_they_would_alone(model_paths: list[Path]) -> None:
    from alflow.exploration.batched import run_walkers_batched

    steps, walkers = 30, walkers_nvt()
    options = {"steps": steps, "sample_interval_steps": 5, **SHARED}
    # without an uncertainty limit; the trajectories do not depend on it until a stop
    trace = one_by_one(model_paths, walkers, trust_hi_eV_A=math.inf, **options)
    trust_hi = _trust_hi_between(trace)
    alone = trace[:3] + one_by_one(model_paths, walkers[3:], trust_hi_eV_A=trust_hi, **options)
    assert [r.stop_reason is None for r in alone[:2]] == [True, True]
    assert alone[2].stop_reason.startswith("temperature")
    assert alone[3].stop_reason.startswith("uncertainty") and 0 < alone[3].steps_done < steps
    assert alone[2].steps_done != alone[3].steps_done  # the batch shrinks twice

    shared = committee(model_paths)
    batched = run_walkers_batched(walkers, shared, trust_hi_eV_A=trust_hi, **options)
    assert_same(alone, batched)
    per_structure = sum(1 + r.steps_done for r in alone) + 2 * sum(
        r.committee_evaluations for r in alone
    )
    assert shared.model_evaluations == per_structure
    # one model call per member and round (walkers 0 and 3 share member 0), not per walker
    assert shared.model_calls <= 0.8 * shared.model_evaluations


@needs_mace
def test_batched_npt_and_committee_mean_walkers(model_paths: list[Path]) -> None:
    from alflow.exploration.batched import BatchWalker, run_walkers_batched

    walkers = [
        BatchWalker(cell(0.02, 5), 600.0, seed=21, pressure_GPa=0.0, propagator=1),
        BatchWalker(cell(0.02, 6), 600.0, seed=22, pressure_GPa=5.0, propagator=None),
    ]
    options = {
        "steps": 20,
        "sample_interval_steps": 10,
        "trust_hi_eV_A": 5.0,
        "ensemble": "npt",
        "barostat_time_fs": 200.0,
        **SHARED,
    }
    alone = one_by_one(model_paths, walkers, **options)
    batched = run_walkers_batched(walkers, committee(model_paths), **options)
    assert_same(alone, batched)
    volumes = [f.atoms.get_volume() for f in batched[1].frames]
    assert volumes[-1] != pytest.approx(volumes[0], rel=1e-6)  # the barostat moved the cell


@needs_mace
def test_a_failing_walker_is_named_and_the_others_finish(model_paths: list[Path]) -> None:
    from alflow.exploration.batched import BatchWalker, run_walkers_batched

    gold = bulk("Au", "fcc", a=4.08, cubic=True)
    walkers = [BatchWalker(cell(0.02, 0), 300.0, seed=1, propagator=0), BatchWalker(gold, 300.0, 2)]
    shared = committee(model_paths)
    with pytest.raises(ExplorationError, match=r"walker 1 of a batch of 2: .*elements \['Au'\]"):
        run_walkers_batched(
            walkers, shared, steps=5, sample_interval_steps=5, trust_hi_eV_A=5.0, **SHARED
        )
    assert shared.model_evaluations >= 6  # walker 0 ran its 5 steps alone


# --------------------------------------------------------------------- the loop


def campaign(walkers: int, per_job: int, **exploration: Any) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "batched",
            "initial": {
                "structures": [
                    {"kind": "bulk", "symbol": "Cu", "a_A": 3.61, "supercell": [2, 2, 2]},
                    {"kind": "bulk", "symbol": "Cu", "a_A": 3.55, "supercell": [2, 2, 2]},
                ]
            },
            "committee": {"members": 3, "training": {"dtype": "float64"}},
            "exploration": {
                "walkers": walkers,
                "walkers_per_job": per_job,
                "temperatures_K": [300, 900],
                **exploration,
            },
        }
    )


def test_builder_makes_one_md_firework_per_batch() -> None:
    from alflow.workflow.builder import iteration_workflow

    wf = iteration_workflow(campaign(10, 4), 3)
    md = [fw for fw in wf.fws if fw.spec["_category"] == "md"]
    # grouped by propagating member (w mod 3) before being cut into jobs of 4
    assert [fw.spec["walkers"] for fw in md] == [[0, 3, 6, 9], [1, 2, 4, 7], [5, 8]]
    assert [fw.name for fw in md] == [f"batched it3 md w{w}" for w in ("0,3,6,9", "1,2,4,7", "5,8")]
    assert all("walker" not in fw.spec and fw.spec["_allow_fizzled_parents"] for fw in md)
    select = next(fw for fw in wf.fws if fw.spec["step"] == "select")
    assert all(wf.links[fw.fw_id] == [select.fw_id] for fw in md)
    trains = [fw for fw in wf.fws if fw.spec["step"] == "train"]
    assert all(set(wf.links[fw.fw_id]) >= {m.fw_id for m in md} for fw in trains)

    one = [fw for fw in iteration_workflow(campaign(3, 1), 0).fws if fw.spec["step"] == "explore"]
    assert [fw.spec["walker"] for fw in one] == [0, 1, 2] and "walkers" not in one[0].spec
    assert [fw.name for fw in one] == [f"batched it0 md w{w}" for w in range(3)]
    whole = [fw for fw in iteration_workflow(campaign(3, 8), 0).fws if fw.spec["step"] == "explore"]
    assert [fw.spec["walkers"] for fw in whole] == [[0, 1, 2]]
    assert [fw.name for fw in whole] == ["batched it0 md w0-2"]
    mean = iteration_workflow(campaign(5, 2, propagator="mean"), 0)
    md = [fw for fw in mean.fws if fw.spec["step"] == "explore"]
    assert [fw.spec["walkers"] for fw in md] == [[0, 1], [2, 3], [4]]
    assert [fw.name.split()[-1] for fw in md] == ["w0-1", "w2-3", "w4"]


def _explored(store: Any) -> dict[tuple[int, int], dict[str, Any]]:
    docs = store.structures_of("batched", status="explored")
    return {(d["origin"]["walker"], d["origin"]["step"]): d for d in docs}


def _context(store: Any, config: CampaignConfig, paths: list[Path], workdir: Path) -> Any:
    from alflow.settings import Settings
    from alflow.steps.context import StepContext

    store.register_campaign(config)
    for member, path in enumerate(paths):
        store.put_model("batched", 0, member, path, {"seed": member})
    return StepContext(
        store=store, config=config, settings=Settings(torch_threads=1), workdir=workdir
    )


@needs_mace
def test_explore_batched_stores_what_one_by_one_stores(
    model_paths: list[Path], new_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alflow.exploration import batched
    from alflow.steps.explore import explore_walker, explore_walkers

    config = campaign(3, 3, steps=20, sample_interval_steps=10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one_store, batch_store = new_store(), new_store()
    one_ctx = _context(one_store, config, model_paths, tmp_path / "a")
    batch_ctx = _context(batch_store, config, model_paths, tmp_path / "b")
    alone = [explore_walker(one_ctx, 0, w) for w in range(3)]
    together = explore_walkers(batch_ctx, 0, [0, 1, 2])
    for a, b in zip(alone, together, strict=True):
        assert {k: v for k, v in a.items() if k != "wall_s"} == {
            k: v for k, v in b.items() if k != "wall_s"
        }
    expected, got = _explored(one_store), _explored(batch_store)
    assert sorted(got) == sorted(expected) and len(got) == sum(a["n_frames"] for a in alone)
    for where, doc in expected.items():
        other = got[where]
        assert other["key"] == doc["key"]
        origin = {k: v for k, v in doc["origin"].items()}
        assert other["origin"] == origin
        assert other["uncertainty"]["max_force_dev_eV_A"] == pytest.approx(
            doc["uncertainty"]["max_force_dev_eV_A"], abs=1e-9
        )

    # a rerun reuses every walker's own cache and replaces only its own frames
    monkeypatch.setattr(batched, "run_walkers_batched", lambda *a, **k: pytest.fail("ran MD"))
    assert [r["n_frames"] for r in explore_walkers(batch_ctx, 0, [0, 1, 2])] == [
        a["n_frames"] for a in alone
    ]
    assert sorted(_explored(batch_store)) == sorted(expected)
    assert sorted(p.name for p in (tmp_path / "b").glob("walker*.result.pkl")) == [
        "walker0.result.pkl",
        "walker1.result.pkl",
        "walker2.result.pkl",
    ]
