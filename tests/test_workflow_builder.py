"""The iteration workflow's topology, categories, names and queue resources."""

from __future__ import annotations

from alflow.config import CampaignConfig
from alflow.workflow.builder import iteration_workflow, labeling_workflow

CONFIG = CampaignConfig.model_validate(
    {
        "name": "wf",
        "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]},
        "committee": {"members": 3},
        "exploration": {"walkers": 2},
        "labeling": {"queue": {"cores": 8, "walltime_min": 90}},
    }
)


def by_step(wf) -> dict[str, list]:
    out: dict[str, list] = {}
    for fw in wf.fws:
        out.setdefault(fw.spec["step"], []).append(fw)
    return out


def test_first_iteration_topology() -> None:
    wf = iteration_workflow(CONFIG, 0, seed_keys=["a", "b"])
    steps = by_step(wf)
    assert len(steps["label"]) == 2 and len(steps["references"]) == 1
    assert len(steps["train"]) == 3 and len(steps["explore"]) == 2 and len(steps["select"]) == 1
    assert wf.name == "wf iteration 0"
    assert wf.metadata == {"campaign": "wf", "iteration": 0}
    train_ids = {fw.fw_id for fw in steps["train"]}
    for fw in steps["label"] + steps["references"]:
        assert set(wf.links[fw.fw_id]) == train_ids
    for fw in steps["train"]:
        assert {c for c in wf.links[fw.fw_id]} == {w.fw_id for w in steps["explore"]}
    assert {fw.spec["_category"] for fw in wf.fws} == {"dft", "train", "md", "service"}
    # a failed seed label or a diverged member does not block the iteration
    assert all(fw.spec["_allow_fizzled_parents"] for fw in steps["train"] + steps["explore"])
    label = steps["label"][0].spec
    assert (
        label["_queueadapter"]["ntasks"] == 8 and label["_queueadapter"]["walltime"] == "01:30:00"
    )


def test_later_iteration_has_no_seeds() -> None:
    steps = by_step(iteration_workflow(CONFIG, 2))
    assert "label" not in steps and "references" not in steps
    assert all(fw.spec["iteration"] == 2 for group in steps.values() for fw in group)


def test_labeling_additions_fan_in_to_collect() -> None:
    wf = labeling_workflow(CONFIG, 1, ["k1", "k2", "k3"])
    steps = by_step(wf)
    collect = steps["collect"][0]
    assert collect.spec["_allow_fizzled_parents"] is True
    assert all(wf.links[fw.fw_id] == [collect.fw_id] for fw in steps["label"])
    empty = by_step(labeling_workflow(CONFIG, 1, []))
    assert list(empty) == ["collect"]


def test_tasks_keep_the_names_stored_workflows_hold() -> None:
    """Every task is stored as ``{{alflow.workflow.tasks.<Name>}}`` and loads back from it."""
    from fireworks.utilities.fw_serializers import load_object

    from alflow.workflow import tasks

    names = [n for n in tasks.__all__ if n.endswith("Task")]
    assert len(names) == 8
    for name in names:
        stored = f"{{{{alflow.workflow.tasks.{name}}}}}"
        assert getattr(tasks, name)._fw_name == stored
        assert type(load_object({"_fw_name": stored})) is getattr(tasks, name)
    wf = iteration_workflow(CONFIG, 0, seed_keys=["a"])
    for fw in wf.fws:
        for task in fw.to_dict()["spec"]["_tasks"]:
            assert task["_fw_name"].startswith("{{alflow.workflow.tasks.")
