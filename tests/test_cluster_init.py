"""`alflow init-cluster`: launchpad, per-category FireWorkers, Slurm/PBS queue adapters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alflow.cluster.init import ClusterOptions, write_cluster_files
from alflow.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
URI = "mongodb://user:secret@db.example.org:27017/"


def _adapter_script(path: Path, fw_queueadapter: dict, launch_dir: Path) -> str:
    """Render a queue script the way `qlaunch -r` does: adapter file + the Firework's resources."""
    from fireworks.utilities.fw_serializers import load_object_from_file

    adapter = load_object_from_file(str(path))
    adapter.update(fw_queueadapter)
    return adapter.get_script_str(str(launch_dir))


def test_files_for_slurm_with_campaign_resources(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alflow.cli",
            "init-cluster",
            "--store",
            URI,
            "--out",
            str(out),
            "--campaign",
            str(REPO / "workflows" / "al-gpaw.yaml"),
            "--queue",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "qlaunch" in result.stdout and "rapidfire" in result.stdout
    names = {p.name for p in out.iterdir()}
    assert {
        "my_launchpad.yaml",
        "my_fworker_train.yaml",
        "my_fworker_md.yaml",
        "my_fworker_dft.yaml",
        "my_fworker_service.yaml",
        "my_qadapter_dft.yaml",
        "my_qadapter_train.yaml",
        "my_qadapter_md.yaml",
        "slurm_template.txt",
    } <= names

    from fireworks import FWorker, LaunchPad

    launchpad = yaml.safe_load((out / "my_launchpad.yaml").read_text())
    assert launchpad["uri_mode"] is True and launchpad["host"] == URI
    assert LaunchPad.from_dict(launchpad).name == "fireworks"
    for category, device in (("train", "cuda"), ("md", "cuda"), ("dft", "cpu"), ("service", "cpu")):
        worker = FWorker.from_file(str(out / f"my_fworker_{category}.yaml"))
        assert worker.category == [category]  # never a worker that runs everything
        assert worker.env["store"] == URI and worker.env["device"] == device
        assert worker.query["spec.campaign"] == "al-gpaw"
    dft = FWorker.from_file(str(out / "my_fworker_dft.yaml"))
    assert dft.env["mpi_command"] == "srun" and dft.env["mpi_ranks"] == 2
    from alflow.settings import Settings

    Settings.model_validate(dft.env)  # the Firetasks read exactly these settings

    # a dft Firework's own _queueadapter wins over the file's defaults (qlaunch -r)
    script = _adapter_script(
        out / "my_qadapter_dft.yaml",
        {"nodes": 1, "ntasks": 8, "walltime": "02:30:00", "job_name": "alflow-x-label"},
        tmp_path,
    )
    assert "#SBATCH --ntasks=8" in script and "#SBATCH --time=02:30:00" in script
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --job-name=alflow-x-label" in script
    assert "--gres" not in script and "export OMP_NUM_THREADS=1" in script
    assert f"-w {out / 'my_fworker_dft.yaml'} singleshot" in script
    gpu = _adapter_script(out / "my_qadapter_train.yaml", {}, tmp_path)
    assert "#SBATCH --gres=gpu:1" in gpu and "my_fworker_train.yaml" in gpu


def test_files_for_pbs_and_refusals(tmp_path: Path) -> None:
    written = write_cluster_files(ClusterOptions(store=URI, out_dir=tmp_path, scheduler="pbs"))
    assert tmp_path / "pbs_template.txt" in written
    dft = yaml.safe_load((tmp_path / "my_fworker_dft.yaml").read_text())
    assert dft["env"]["mpi_command"] == "mpiexec" and json.loads(dft["query"]) == {}
    script = _adapter_script(
        tmp_path / "my_qadapter_dft.yaml",
        {"nodes": 1, "ntasks": 4, "walltime": "00:30:00"},
        tmp_path,
    )
    assert "#PBS -l nodes=1:ppn=4" in script and "#PBS -l walltime=00:30:00" in script
    with pytest.raises(ConfigError, match="exists"):
        write_cluster_files(ClusterOptions(store=URI, out_dir=tmp_path, scheduler="pbs"))
    with pytest.raises(ConfigError, match="MongoDB"):
        write_cluster_files(ClusterOptions(store="store.bson", out_dir=tmp_path / "x"))


def test_zopen_shim_makes_offline_rocket_files_readable(tmp_path: Path) -> None:
    """FireWorks' Rocket calls zopen(path) without a mode; the shim supplies text mode."""
    import fireworks.core.rocket as rocket

    from alflow.workflow.offline import install_zopen_shim

    install_zopen_shim()
    install_zopen_shim()  # idempotent
    path = tmp_path / "FW_offline.json"
    path.write_text('{"launch_id": 1}')
    with rocket.zopen(str(path)) as handle:
        assert json.loads(handle.read()) == {"launch_id": 1}
    with rocket.zopen(str(path), "wt") as handle:
        handle.write("{}")
    assert path.read_text() == "{}"
