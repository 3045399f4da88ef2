"""Rate–distortion evaluation shared by ``mriae evaluate`` and ``benchmarks/rd.py``:
fidelity metrics, Bjøntegaard BD-rate, and plots."""

from mriae.extras import required

with required("eval", "mriae evaluate"):
    from mriae.evaluation.bdrate import bd_rate
    from mriae.evaluation.metrics import max_abs_error, psnr, ssim
    from mriae.evaluation.report import RDPoint, evaluate_mriae, read_csv, write_csv

__all__ = ["RDPoint", "bd_rate", "evaluate_mriae", "max_abs_error", "psnr", "read_csv", "ssim", "write_csv"]
