"""Exact merge audit and merging of PEFT LoRA adapters trained on one base.

Public API:
    merge_audit(a, b, *, thresholds=None, top_k=8) -> MergeAuditReport
        principal angles, Frobenius cosine, norm ratio per shared module, from the factors only
    merge_adapters(sources, dst, plan, *, overwrite=False) -> MergeReport
        MergePlan(method="linear" | "svd" | "ties" | "dare", weights=…, rank=… | energy=…, …)
    render_merge_audit, merge_audit_markdown, render_merge
    MergeError   (inputs that cannot be compared or merged; CLI exit 2)

Imports audit and compress only.
"""

from gradience.merge.combine import merge_adapters
from gradience.merge.compare import merge_audit, verdict
from gradience.merge.errors import MergeError
from gradience.merge.plan import METHODS, MergePlan
from gradience.merge.render import merge_audit_markdown, render_merge, render_merge_audit
from gradience.merge.report import LayerCompat, MergeAuditReport, MergedLayer, MergeReport, Thresholds

__all__ = [
    "METHODS",
    "LayerCompat",
    "MergeAuditReport",
    "MergeError",
    "MergePlan",
    "MergeReport",
    "MergedLayer",
    "Thresholds",
    "merge_adapters",
    "merge_audit",
    "merge_audit_markdown",
    "render_merge",
    "render_merge_audit",
    "verdict",
]
