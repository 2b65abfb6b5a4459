# The two commands of the README's Quick start. Each installs what is missing first.
PYTHON ?= python3
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: setup demo quickstart test test-fast lint

setup:
	bash scripts/setup.sh

## demo: the main job, an active-learning campaign for bulk Al with GPAW DFT (local server in alflow-store/)
demo: setup
	ALFLOW_MPI_RANKS=$${ALFLOW_MPI_RANKS:-2} alflow run workflows/al-gpaw.yaml
	alflow status --campaign al-gpaw

## quickstart: the same loop with EMT as the reference method (a few minutes)
quickstart: setup
	alflow run workflows/quickstart-emt.yaml
	alflow status --campaign quickstart-emt

## test: the whole test suite (GPAW, MACE, FireWorks, Slurm and browser tests included)
test: setup
	$(PYTHON) -m pytest -v --durations=15

## test-fast: the suite without the tests marked slow, Slurm, browser or cluster (a quick check while editing)
test-fast: setup
	$(PYTHON) -m pytest -q -x -m "not slow and not slurm and not browser and not cluster"

lint:
	ruff check alflow tests benchmarks && ruff format --check alflow tests benchmarks
