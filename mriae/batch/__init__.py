"""Batch jobs over many files on Dask distributed (a face over the core, never imported by it)."""

from mriae.extras import required

with required("batch", "mriae batch"):
    from mriae.batch.inputs import BatchInputError
    from mriae.batch.job import BatchJob, Summary, run_batch

__all__ = ["BatchInputError", "BatchJob", "Summary", "run_batch"]
