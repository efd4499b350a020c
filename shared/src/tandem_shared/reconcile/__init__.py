"""Reconciliation: compare both sides in full, report what differs, repair it through the pipeline."""
