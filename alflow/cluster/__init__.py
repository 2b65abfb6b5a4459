"""Running campaigns on clusters: FireWorks worker/queue files, Slurm, offline launches."""
