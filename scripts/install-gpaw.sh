#!/usr/bin/env bash
# Build and install GPAW (with MPI, FFTW, ScaLAPACK and libxc) plus its PAW
# setups (the gpaw-data package) into the current python3.
#
# Idempotent: does nothing when `import gpaw` works and `gpaw info` reports
# MPI, FFTW, ScaLAPACK and libxc. Set FORCE=1 to rebuild anyway.
#
# Needs (Debian bookworm):
#   apt-get install libxc-dev libopenblas-dev openmpi-bin libopenmpi-dev \
#                   libfftw3-dev libscalapack-openmpi-dev
# The build compiles GPAW's C/C++ extension: about 1-2 minutes on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
gpaw_spec="${GPAW_SPEC:-gpaw}"

has_feature() {  # has_feature NAME: the line of `gpaw info` for NAME says yes
    grep -iE "^\|? *$1[- ]" <<<"$info" | grep -qiE " yes *$"
}

if [[ "${FORCE:-0}" != 1 ]] && "$python" -c "import gpaw" 2>/dev/null; then
    info="$("$python" -m gpaw info 2>&1 || true)"
    if has_feature "MPI enabled" && has_feature "FFTW" && has_feature "scalapack" \
        && has_feature "libxc"; then
        echo "gpaw already installed with MPI, FFTW, ScaLAPACK and libxc; nothing to do."
        exit 0
    fi
    echo "gpaw is installed without MPI/FFTW/ScaLAPACK: rebuilding."
fi

libdir="/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
for lib in libxc.so libopenblas.so libfftw3.so libscalapack-openmpi.so; do
    if [[ ! -e "$libdir/$lib" ]]; then
        echo "missing $libdir/$lib: apt-get install the packages listed in $0" >&2
        exit 1
    fi
done
command -v mpic++ >/dev/null || { echo "mpic++ not found: apt-get install libopenmpi-dev" >&2; exit 1; }

export GPAW_CONFIG="$here/gpaw-siteconfig.py"
# --no-binary: GPAW's build runs setup.py, which reads GPAW_CONFIG; never reuse
# a cached wheel built without it. --no-cache-dir for the same reason.
"$python" -m pip install --no-cache-dir --no-binary gpaw --force-reinstall --no-deps "$gpaw_spec"
"$python" -m pip install "$gpaw_spec" gpaw-data

info="$("$python" -m gpaw info 2>&1)"
echo "$info"
for feature in "MPI enabled" FFTW scalapack libxc; do
    has_feature "$feature" || { echo "gpaw built without $feature" >&2; exit 1; }
done
