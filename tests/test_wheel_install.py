"""alflow installed as a wheel (``pip install .``, not editable) runs a campaign outside the checkout.

The package must carry what it reads at run time (queue templates as
package data through importlib.resources) and its subprocesses (MACE
training, the repulsive prior, workers) must import the installed alflow,
not the source tree. The virtual environment sees the system's site-packages
for the heavy dependencies (torch, mace, FireWorks) but gets its own alflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.mace]


def _run(args: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ALFLOW")}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with alflow installed from a wheel built from this checkout.

    The wheel is built by this interpreter's pip and setuptools (a fresh
    venv's bundled setuptools may be too old to build one) from a copy of the
    sources, so nothing is written into the checkout.
    """
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(
        REPO / "alflow", source / "alflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheel = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(base / "dist"),
            str(source),
        ],
        cwd=base,
        timeout_s=300,
    )
    assert wheel.returncode == 0, wheel.stdout[-2000:] + wheel.stderr[-2000:]
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True)
    install = _run(
        [
            str(root / "bin" / "pip"),
            "install",
            "--no-deps",
            "--no-index",
            *map(str, (base / "dist").glob("alflow-*.whl")),
        ],
        cwd=base,
        timeout_s=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return root


def test_the_wheel_is_what_the_environment_imports(venv: Path, tmp_path: Path) -> None:
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import alflow, alflow.templates as t; print(alflow.__file__); "
            "print(t.queue_template('slurm').read_text()[:9]); "
            "from importlib.resources import files; "
            "print((files('alflow.monitor') / 'templates' / 'alflow_campaign.html').is_file())",
        ],
        cwd=tmp_path,
        timeout_s=120,
    )
    assert where.returncode == 0, where.stderr
    module_file, head, gui_template = where.stdout.split("\n")[:3]
    assert Path(module_file).is_relative_to(venv), module_file
    assert head.startswith("#!")
    assert gui_template == "True"


def test_init_cluster_copies_the_packaged_template(venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    done = _run(
        [
            str(venv / "bin" / "alflow"),
            "init-cluster",
            "--store",
            "mongodb://db.example:27017/",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        timeout_s=120,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "slurm_template.txt").read_text().startswith("#!")


def test_quickstart_campaign_runs_from_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    """The quickstart file, cut to one short iteration, runs to its final fit with the wheel."""
    config = yaml.safe_load((REPO / "workflows" / "quickstart-emt.yaml").read_text())
    config["name"] = "wheel-quickstart"
    config["committee"]["members"] = 2
    config["committee"]["training"]["epochs"] = 3
    config["exploration"].update(steps=40, walkers=1)
    config["loop"]["max_iterations"] = 1
    config["final"] = {"epochs": 3, "validate_after": False}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "campaign.yaml").write_text(yaml.safe_dump(config))

    run = _run([str(venv / "bin" / "alflow"), "run", "campaign.yaml"], cwd=outside, timeout_s=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    status = _run(
        [str(venv / "bin" / "alflow"), "status", "--campaign", "wheel-quickstart"],
        cwd=outside,
        timeout_s=120,
    )
    assert status.returncode == 0, status.stderr
    assert "result:" in status.stdout and "final" in status.stdout, status.stdout
