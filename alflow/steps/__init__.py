"""The steps of one iteration, as plain functions over the store.

Each step reads its inputs from the store, does one job, writes its outputs
keyed by (campaign, iteration, step, index) so a rerun overwrites only its own
outputs, and returns a small JSON-able summary. Steps know nothing of FireWorks.
"""
