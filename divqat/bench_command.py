"""`divqat bench`: time every fused op of divqat.ops against eager PyTorch on one device.

The cases and ``median_ms`` are :mod:`divqat.bench`'s (what benchmarks/ time too); this module
checks the sizes against the device's free memory before anything is allocated and prints the
table with the speed-up over eager. Defaults are small so that the command finishes in seconds on a
laptop CPU.
"""
import os

import torch

from divqat.bench import fake_quant_cases, kl_cases, kl_inputs, median_ms
from divqat.cli_options import add_deprecated_alias

__all__ = ["add_arguments", "run"]


def _free_bytes(device):
    """Memory free for new tensors on ``device``: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_fits(args, device):
    """ValueError naming the sizes, before anything is allocated, when the cases' tensors would not
    fit in ``device``'s free memory: an upper bound of 16 fp32 tensors of the logits' size
    (inputs, softmaxes, gradients, compiled and eager copies) and 8 of fake_quant's."""
    need = 4 * (16 * args.rows * args.cols + 8 * args.fq_size**2)
    free = _free_bytes(device)
    if need > free:
        raise ValueError(f"--rows {args.rows} x --cols {args.cols} and --fq-size {args.fq_size} need about "
                         f"{need / 2**30:.3g} GiB, {device} has {free / 2**30:.3g} GiB free: choose smaller sizes")


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--rows", type=int, default=1024, help="rows of the logits (default: 1024)")
    parser.add_argument("--cols", type=int, default=1000, help="classes per row (default: 1000)")
    parser.add_argument("--fq-size", type=int, default=1024, help="fake_quant input is N x N (default: 1024)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (default: 20)")
    add_deprecated_alias(parser, "--repeat", "--repeats")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")


def run(args):
    from divqat.utils import resolve_device

    for name in ("rows", "cols", "fq_size", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    device = resolve_device(args.device)
    _check_fits(args, device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kl, kl_bytes = kl_cases(*kl_inputs(args.rows, args.cols, device))
    fq, fq_bytes = fake_quant_cases(args.fq_size, args.fq_size, device)
    print(
        f"divqat bench on {device} ({torch.get_num_threads()} CPU threads): forward+backward, "
        f"median of {args.repeats}; logits {args.rows}x{args.cols}, fake_quant {args.fq_size}x{args.fq_size}, fp32"
    )
    print(f"{'op':<28}{'divqat ms':>11}{'eager ms':>11}{'speed-up':>10}{'divqat GB/s':>13}")
    for cases, nbytes in ((kl, kl_bytes), (fq, fq_bytes)):
        for name, fns in cases.items():
            ours = median_ms(fns["divqat"], device, args.repeats)
            eager = median_ms(fns["eager"], device, args.repeats)
            print(f"{name:<28}{ours:>11.3f}{eager:>11.3f}{eager / ours:>9.2f}x{nbytes / ours / 1e6:>13.1f}")
    return 0
