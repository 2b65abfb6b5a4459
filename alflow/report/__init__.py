"""Reports on campaigns: status tables now; plots and pages later."""
