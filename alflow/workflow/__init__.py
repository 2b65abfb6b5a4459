"""The only code that knows FireWorks: Firetasks, the iteration workflow, the runner."""
