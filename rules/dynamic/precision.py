from __future__ import annotations

from torchaudit.report import ComparisonResult, Divergence, Severity
from torchaudit.rules.dynamic.base import DivergenceRule, where
from torchaudit.rules.engine import register


@register
class FragileInLowPrecision(DivergenceRule):
    """
    What it finds:
        A node whose own (local) error in the candidate dtype, fed the float64 reference's own
        inputs, is far above what rounding in that dtype explains (the rounding of its output
        and inputs plus a reduction term for its fan-in).

    Why it matters:
        Error that a node introduces itself does not come from upstream: that op is the
        numerically fragile spot (overflow in `exp`, cancellation in a variance, a softmax
        without max subtraction, a long float16 sum), and later layers amplify it.

    Example:
        `torch.exp(h)` on float16 activations above about 11 overflows to `inf`;
        `(x * x).mean() - x.mean() ** 2` loses all digits in float16.

    Fix:
        Compute that op in float32 (autocast runs softmax, exp and reductions in float32),
        or rewrite it in a stable form (`logsumexp`, `torch.var`).

    Fact:
        Tolerances default to `torch.testing.assert_close`'s per dtype
        (torch/testing/_comparison.py, `_DTYPE_PRECISIONS`); the float64 arbitration follows
        `torch._dynamo.utils.same(..., fp64_ref=...)`.
    """

    code = "TA704"
    severity = Severity.WARNING
    title = "Node's own error in the candidate dtype is far above rounding"
    comparison = "dtype"

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        return (f"in {result.candidate.dtype} (against {result.reference.dtype}) {where(d)} introduces an error of its own "
                f"beyond rounding: {error}")

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return "compute that op in float32 (or under autocast), or rewrite it in a numerically stable form"


@register
class DeviceDivergence(DivergenceRule):
    """
    What it finds:
        CPU and CUDA runs of the same model part beyond tolerance at a node's own error: the
        CUDA op fed the CPU run's inputs already gives a different output.

    Why it matters:
        Models are trained on GPU and served on CPU (or the reverse); a node that computes
        differently per device changes predictions after deployment. Usual causes: TF32
        matmuls, nondeterministic atomics, different kernels or reduction orders.

    Example:
        With `torch.backends.cuda.matmul.allow_tf32 = True` a float32 matmul on CUDA keeps
        only 10 mantissa bits of its inputs.

    Fix:
        Turn TF32 off for that comparison (`torch.backends.cuda.matmul.allow_tf32 = False`),
        use deterministic algorithms, or compute that op in higher precision.

    Fact:
        `torch.backends.cuda.matmul.allow_tf32` governs TF32 in float32 matmuls
        (torch/backends/cuda/__init__.py).
    """

    code = "TA705"
    severity = Severity.WARNING
    title = "CPU and CUDA part at a node's own error"
    comparison = "device"

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        return f"{result.reference} and {result.candidate} part at {where(d)}: {error}"

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return "check that op's CUDA kernel: disable TF32, use deterministic algorithms, or compute it in higher precision"
