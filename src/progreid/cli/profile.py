"""`progreid profile [CONFIG_OR_RUN] [--batch-sizes 1,8,32] [--compare] [--plot RUN ...]`."""

from __future__ import annotations

import argparse

from progreid.config import ConfigError


def batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; each must be a positive integer."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--batch-sizes {text!r}: expected comma-separated "
                                         "integers, e.g. 1,8,32") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch-sizes {text!r}: need positive integers")
    return sizes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("profile", help="parameters, Mul-Adds, inference memory and "
                                            "throughput (PLA Sec. 4.5)")
    parser.add_argument("target", nargs="?", help="YAML recipe or run folder / model.pt")
    parser.add_argument("--batch-sizes", type=batch_sizes, default=[1, 8, 32],
                        help="comma-separated batch sizes for memory and throughput")
    parser.add_argument("--compare", action="store_true",
                        help="also profile ResNet-50 baseline, PLA two-head and MGN")
    parser.add_argument("--height", type=int, help="input height (default: the config's; "
                                                   "256 for --compare)")
    parser.add_argument("--width", type=int, help="input width (default: the config's; 128)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches (median taken)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--json", dest="json_out", help="also write the profiles to this file")
    parser.add_argument("--plot", nargs="+", metavar="RUN",
                        help="draw mAP vs Mul-Adds and vs memory (PLA Fig. 4/5) for these runs; "
                             "memory at the first --batch-sizes value")
    parser.add_argument("--out", default="efficiency.png", help="PNG written by --plot")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.utils.device import resolve_device

    if args.warmup < 0 or args.repeats < 1:
        raise ConfigError(f"--warmup {args.warmup} / --repeats {args.repeats}: need warmup >= 0 "
                          "and repeats >= 1")
    for flag, pixels in (("--height", args.height), ("--width", args.width)):
        if pixels is not None and pixels < 1:
            raise ConfigError(f"{flag} {pixels}: the input size must be at least 1 pixel")
    device = resolve_device(args.device)
    if args.plot:
        return _plot(args, str(device))
    if not args.target and not args.compare:
        raise ConfigError("give a recipe or run folder, or --compare")
    from progreid.profiling.profiler import format_table, profile_spec
    from progreid.profiling.spec import COMPARISON, spec_from_path
    from progreid.utils.io import atomic_write_json

    jobs = []
    if args.target:
        spec, cfg = spec_from_path(args.target)
        jobs.append((spec, args.height or cfg.data.height, args.width or cfg.data.width))
    if args.compare:
        jobs += [(spec, args.height or 256, args.width or 128) for spec in COMPARISON]
    profiles = [profile_spec(spec, height, width, args.batch_sizes, device, args.warmup,
                             args.repeats, memory=not args.no_memory)
                for spec, height, width in jobs]
    print(f"device: {device}   (Mul-Add = FLOPs / 2, per image; memory = peak per batch)")
    print(format_table(profiles))
    if args.json_out:
        atomic_write_json(args.json_out, [p.to_dict() for p in profiles])
    return 0


def _plot(args: argparse.Namespace, device: str) -> int:
    from progreid.profiling.figures import efficiency_point, plot_efficiency

    points = [efficiency_point(run_dir, args.batch_sizes[0], device) for run_dir in args.plot]
    for point in points:
        print(f"{point.label}: mAP {point.mAP:.1f}  Mul-Adds {point.mul_adds / 1e9:.3f} G  "
              f"memory {point.memory / 2**20:.0f} MiB")
    print(f"figure: {plot_efficiency(points, args.out)}")
    return 0
