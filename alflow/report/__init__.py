"""Reports on campaigns: ``status`` (``alflow status``), ``summary`` (the numbers per
iteration), ``plots`` (the figures) and ``write`` (``alflow report``: figures and summary)."""
