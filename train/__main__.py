"""``python -m train <command> ...``: one entry point, each command in its own module.

Commands are imported lazily so ``python -m train data synth`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("train.data_cli", "synthetic DAGM generator, contact sheet, tree check"),
    "fit": ("train.fit", "train a teacher"),
    "distill": ("train.distill", "distil a student from a teacher (Eq. 1)"),
    "evaluate": ("train.evaluate", "the paper's 9-patch test protocol"),
    "export": ("train.export", "ONNX + sidecar (+ folded variant) with a parity check"),
    "run": ("train.run", "train a student on your own dataset (generic layout)"),
    "reproduce": ("train.reproduce", "run a preset end to end: smoke | cpu | paper"),
    "report": ("train.report", "rewrite a run's REPORT.md from its results.json"),
    "analyze": ("train.analysis", "γ, sparsity, disentanglement, inversion, embeddings"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print("usage: python -m train <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
