#!/usr/bin/env bash
# Install everything alflow needs on a Debian/Ubuntu machine, idempotently:
# system packages (MPI, BLAS, libxc, FFTW, ScaLAPACK, Slurm, Chromium), the CPU
# build of torch, GPAW built against them, and alflow itself (editable).
# Usage: bash scripts/setup.sh        (as root, or a user with sudo)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

APT_PACKAGES="build-essential libxc-dev libopenblas-dev openmpi-bin libopenmpi-dev libfftw3-dev
libscalapack-openmpi-dev slurm-wlm munge chromium chromium-driver"
missing=""
for package in $APT_PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
"$PYTHON" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
    || "$PYTHON" -m pip install -q "torch==2.13.0"
bash scripts/install-gpaw.sh
"$PYTHON" -m pip install -q -e ".[test]"
echo "setup: done ($("$PYTHON" -c 'import alflow, torch, gpaw, mace; print("torch", torch.__version__, "gpaw", gpaw.__version__)'))"
