"""`python3 -m hndd_client COMMAND ...` — each command lives in its own module."""
import importlib
import sys

COMMANDS = {
    "push": ("hndd_client.push", "replay an activations file to hndd serve, as a trainer would"),
    "synth-dictionary": ("hndd_client.synth", "render a synthetic Face Dictionary"),
    "synth-trainset": ("hndd_client.synth", "render a biased synthetic training set"),
    "real-trainset": ("hndd_client.real_trainset", "a gender-skewed smile training set from real CelebA faces"),
    "build-dictionary": ("hndd_client.build", "build a Face Dictionary from its authors' folder or CelebA/UTKFace/AU"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python3 -m hndd_client COMMAND [options]\n\ncommands:", file=sys.stderr)
        for name, (_, what) in COMMANDS.items():
            print(f"  {name:18} {what}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, _ = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    entry = getattr(module, "main_" + argv[0].replace("-", "_"), None) or module.main
    return entry(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
