"""GPAW build configuration for Debian bookworm (used by scripts/install-gpaw.sh).

Read by GPAW's setup.py through ``GPAW_CONFIG=scripts/gpaw-siteconfig.py``; it
is ``exec``-ed with GPAW's defaults already defined (``libraries = ['xc']``,
...), so it only appends. Needs the Debian packages libxc-dev,
libopenblas-dev, openmpi-bin, libopenmpi-dev, libfftw3-dev and
libscalapack-openmpi-dev:

- MPI through Open MPI's C++ wrapper ``mpic++`` (GPAW >= 25 builds as C++),
- BLAS/LAPACK from OpenBLAS (``libopenblas.so``),
- FFTW3 (``libfftw3.so``) for fast plane-wave FFTs,
- ScaLAPACK from ``libscalapack-openmpi.so`` (Debian's name; there is no
  plain ``libscalapack.so``),
- libxc (``libxc.so``), already in GPAW's default ``libraries``.

All of them live in /usr/lib/<multiarch>, on the linker's default path.
"""

# ruff: noqa
# flake8: noqa
# mypy: ignore-errors

mpi = True
compiler = "mpic++"

libraries += ["openblas"]

fftw = True
libraries += ["fftw3"]

scalapack = True
libraries += ["scalapack-openmpi"]
