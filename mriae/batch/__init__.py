"""Batch jobs over many files on Dask distributed (a face over the core, never imported by it)."""

from mriae.batch.job import BatchJob, Summary, run_batch

__all__ = ["BatchJob", "Summary", "run_batch"]
