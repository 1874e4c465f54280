"""``gradience certify``: the smallest SVD truncation of an adapter that is shown as good, written out.

Candidates come from the audit's r×r cores on a ladder (``ladder``), are scored on the same
items by swapping each merged update into one base model (``swap``, ``evaluate``), judged by
the paired non-inferiority test in a fixed sequence (``decide``), and reported (``models``,
``markdown``, ``plot``); ``run`` ties it together and ``store`` owns the output folder.
``truncate.evaluate_truncations`` is the same truncate-and-evaluate for the bench's variants.

Public API:
    certify(CertifyOptions(...), log=...) -> CertifyOutcome (report: CertifyReport, exit_code, text)
    evaluate_truncations(base_model, adapter_dir, {name: CompressionPlan}, *, task, split, batch_size,
                         pad_token_id, device) -> {name: SplitEval}
"""

from gradience.bench.certify.models import CertifyReport, Predictions
from gradience.bench.certify.run import CertifyOptions, CertifyOutcome, certify
from gradience.bench.certify.truncate import evaluate_truncations

__all__ = [
    "CertifyOptions",
    "CertifyOutcome",
    "CertifyReport",
    "Predictions",
    "certify",
    "evaluate_truncations",
]
