"""Run a batch job from Python, as another pipeline would (`python pipelines/batch/run_job.py`)."""

from pathlib import Path

from mriae.batch import BatchJob, run_batch

if __name__ == "__main__":
    job = BatchJob.from_yaml(Path(__file__).with_name("job.yaml"))
    summary = run_batch(job, on_record=lambda record, done, total: print(f"[{done}/{total}] {record.status} {record.path}"))
    print(summary.line())
