"""The fused CPU hash-grid lookup (``fused_lookup.cpp``): build, load, and the autograd function.

The same extension also holds the fused softplus of the geometry MLP (``fused_softplus.cpp``, used through
:mod:`nid_nerf.fields.fused_softplus`); :func:`load` builds and loads both.

On the CPU, :func:`nid_nerf.fields.encoding.corner_lookup` + :func:`~nid_nerf.fields.encoding.interpolate` run as
about thirty torch ops whose intermediates (indices, weights, gathered features) cost some 15 kB of memory traffic
per sample, and whose backward is one ``index_add_``: together 60% of a training step (docs/cpu_limits.md: gathers
and scatter-adds 34%, index math 18%, interpolation 8%). The C++ kernel does the same arithmetic in one pass per
sample and scatters the table gradient level by level (levels own disjoint rows, so threads never collide).

The extension is compiled once per machine with :func:`torch.utils.cpp_extension.load` (g++ and ninja; about a
minute; ``bash scripts/setup.sh`` builds it) into torch's extension cache (``TORCH_EXTENSIONS_DIR``). When it cannot
be built or loaded the field uses the torch lookup, after one log line. Positions that require a gradient, CUDA
tensors and other dtypes also take the torch path (the kernel has no position gradient).

Run ``python -m nid_nerf.fields.fused_lookup`` to build it and check it against the torch lookup.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import once_differentiable

from nid_nerf.fields.encoding import HashGridSpec

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_suffix(".cpp")
SOURCES = (SOURCE, SOURCE.with_name("fused_softplus.cpp"))
EXTENSION = "nid_fused"
_lock = threading.Lock()
_state: dict = {}
"""``loaded``: True / False once tried; ``error``: why it is unavailable."""


def load(verbose: bool = False) -> bool:
    """Build (first call on a machine) and load the extension; False, after one log line, when that fails."""
    with _lock:
        if "loaded" in _state:
            return _state["loaded"]
        try:
            _build_and_register(verbose)
            _state["loaded"] = True
        except Exception as err:  # any build or load failure falls back to the torch lookup
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            _state.update(loaded=False, error=reason)
            logger.warning("fused hash-grid lookup and softplus unavailable (%s); using torch's lookup and softplus",
                           reason[:300])
        return _state["loaded"]


def compile_flags() -> list:
    """``-O3``, plus ``-mavx2 -mfma`` where torch reports an AVX2 or AVX-512 CPU (the extension is built on the
    machine that runs it): eight float lanes and fused multiply-adds for the softplus kernel. fused_lookup.cpp turns
    contraction off for itself (``#pragma GCC optimize``): a multiply-add before a floor rounds once where torch
    rounds twice, and moved a few corners (a table-gradient mismatch in tests/test_fused_lookup.py)."""
    flags = ["-O3"]
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")()
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _build_and_register(verbose: bool) -> None:
    if not (hasattr(torch.ops.nid_fused, "lookup_forward") and hasattr(torch.ops.nid_fused, "softplus_forward")):
        from torch.utils import cpp_extension

        # ninja comes with nerfstudio into the environment's bin folder, which is not on PATH when a tool is run
        # by its full path (.venv/bin/ns-train)
        bin_dir = str(Path(sys.executable).parent)
        if shutil.which("ninja") is None and shutil.which("ninja", path=bin_dir) is not None:
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        build_dir = Path(cpp_extension._get_build_directory(EXTENSION, verbose=False))
        if not (build_dir / f"{EXTENSION}.so").exists():
            logger.info("building the fused hash-grid lookup and softplus (once per machine, 10-40 s) in %s", build_dir)
        cpp_extension.load(
            name=EXTENSION, sources=[str(p) for p in SOURCES], extra_cflags=compile_flags(), is_python_module=False,
            verbose=verbose,
        )
    _register_fakes()


def _register_fakes() -> None:
    """Shapes of the ops for torch.compile's tracing (``compile_field``)."""
    if _state.get("fakes"):
        return

    @torch.library.register_fake("nid_fused::lookup_forward")
    def _forward_fake(table, x, slots, resolutions, num_dense, table_size, with_grad):
        n, width = x.shape[0], len(resolutions) * table.shape[1]
        dz = x.new_empty((3, n, width)) if with_grad else x.new_empty((0,))
        return [x.new_empty((n, width)), dz]

    @torch.library.register_fake("nid_fused::lookup_backward")
    def _backward_fake(grad_z, grad_dz, x, slots, resolutions, num_dense, table_size, table_rows, features):
        return grad_z.new_empty((table_rows, features))

    @torch.library.register_fake("nid_fused::softplus_forward")
    def _softplus_fake(x, beta):
        return [torch.empty_like(x, memory_format=torch.contiguous_format),
                torch.empty_like(x, memory_format=torch.contiguous_format)]

    _state["fakes"] = True


def usable(table: Tensor, x01: Tensor) -> bool:
    """Whether the kernel can serve this lookup (CPU float32, no position gradient) and the extension loads."""
    if table.device.type != "cpu" or x01.device.type != "cpu":
        return False
    if table.dtype != torch.float32 or x01.dtype != torch.float32 or x01.requires_grad:
        return False
    return load()


class _FusedLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, x01, slots, resolutions, num_dense, table_size, with_grad):
        z, dz = torch.ops.nid_fused.lookup_forward(table, x01, slots, resolutions, num_dense, table_size, with_grad)
        ctx.save_for_backward(x01, slots)
        ctx.spec = (resolutions, num_dense, table_size, table.shape[0], table.shape[1], with_grad)
        ctx.mark_non_differentiable(dz) if not with_grad else None
        return z, dz

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z, grad_dz):
        x01, slots = ctx.saved_tensors
        resolutions, num_dense, table_size, rows, features, with_grad = ctx.spec
        grad_table = None
        if ctx.needs_input_grad[0]:
            grad_table = torch.ops.nid_fused.lookup_backward(
                grad_z, grad_dz if with_grad else None, x01, slots, resolutions, num_dense, table_size, rows, features
            )
        return grad_table, None, None, None, None, None, None


def interpolate(
    table: Float[Tensor, "ULS F"], x01: Float[Tensor, "N 3"], slots: Optional[Int[Tensor, " N"]],
    spec: HashGridSpec, with_grad: bool,
) -> Tuple[Float[Tensor, "N LF"], Optional[Float[Tensor, "3 N LF"]]]:
    """What ``interpolate(table, *corner_lookup(x01, spec, with_grad))`` returns, in one kernel.

    ``table`` holds U scene tables of L * S rows each; ``slots`` picks each position's table (None: the first).
    """
    resolutions = list(spec.resolutions())
    num_dense = sum(spec.dense_levels())
    z, dz = _FusedLookup.apply(
        table, x01, None if slots is None else slots.long(), resolutions, num_dense, spec.table_size, with_grad
    )
    return z, (dz if with_grad else None)


def _check() -> None:
    """Build, then compare with the torch lookup on random positions (values and table gradients) and with torch's
    softplus and sigmoid."""
    from nid_nerf.fields.encoding import corner_lookup
    from nid_nerf.fields.encoding import interpolate as torch_interpolate

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not load(verbose=False):
        raise SystemExit(f"fused hash-grid lookup: not available ({_state.get('error')})")
    spec = HashGridSpec()
    table = torch.randn(2 * spec.num_levels * spec.table_size, spec.features_per_level, requires_grad=True)
    x = torch.rand(4096, 3)
    slots = torch.randint(0, 2, (4096,))
    z, dz = interpolate(table, x, slots, spec, True)
    idx, w = corner_lookup(x, spec, with_grad=True)
    zt, dzt = torch_interpolate(table, idx + (slots * spec.num_levels * spec.table_size)[:, None, None], w)
    g1 = torch.autograd.grad((z.sum() + dz.square().sum()), table)[0]
    g2 = torch.autograd.grad((zt.sum() + dzt.square().sum()), table)[0]
    err = max((z - zt).abs().max().item(), ((dz - dzt).abs().max() / dzt.abs().max()).item(),
              ((g1 - g2).abs().max() / g2.abs().max()).item())
    print(f"fused hash-grid lookup: built and loaded; largest relative difference from the torch lookup {err:.1e}")
    if err > 1e-4:
        raise SystemExit("fused hash-grid lookup: differs from the torch lookup")
    pre = torch.randn(4096, 64) * 0.05
    y, s = torch.ops.nid_fused.softplus_forward(pre, 100.0)
    y_t, s_t = torch.nn.functional.softplus(pre, beta=100.0), torch.sigmoid(100.0 * pre)
    err = max(((y - y_t).abs() / y_t).max().item(), (s - s_t).abs().max().item())
    print(f"fused softplus: largest relative difference from torch's softplus and sigmoid {err:.1e}")
    if err > 1e-5:
        raise SystemExit("fused softplus: differs from torch's softplus")


if __name__ == "__main__":
    _check()
