"""Use the minimal ``occlude`` plugin without installing it: register it in this process, make a pair with
PairMaker, and train a tiny ``cqdkit run --degrade occlude``.

    python examples/minimal_plugin/use_plugin.py [--out DIR]

Installed (``pip install -e examples/minimal_plugin``), the plugin needs no registering: its entry point
makes ``cqdkit plugins`` list it and ``cqdkit run --degrade occlude`` use it from the shell.
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cqdkit_occlude  # found next to this script (Python puts the script's folder on sys.path)
from cqdkit import PairMaker, PluginManager
from cqdkit.cli import cli
from cqdkit.plugin import set_plugin_manager

parser = argparse.ArgumentParser(description="Register the occlude plugin in-process and use it.")
parser.add_argument("--out", type=Path, default=Path("runs/occlude-example"))
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)

# What `pip install` + the entry point would do: a plugin manager with cqdkit's built-ins and this plugin,
# made the process-wide one that PairMaker and the CLI use.
manager = PluginManager(autoload=False)
manager.register(cqdkit_occlude)
set_plugin_manager(manager)

# A pair: x is the image, z the same with a gray square over a random 40% x 40% of it (seeded).
image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
x, z = PairMaker("occlude:fraction=0.4", size=32)(image, seed=7)
print(f"occlude hid {(x != z).any(axis=2).mean():.0%} of z's pixels; pair in {args.out / 'pair.png'}")
plt.imsave(args.out / "pair.png", np.hstack([x, z]))

# A tiny CQD run on the synthetic dataset with the plugin's degradation (same as the shell command).
tiny = ["--dataset-option", "classes=3", "--dataset-option", "train_per_class=8", "--dataset-option",
        "test_per_class=4", "--dataset-option", "image_size=48", "--image-size", "32", "--epochs", "1"]
run_dir = args.out / "run"
cli.main(["run", "--degrade", "occlude", *tiny, "--quiet", "--out", str(run_dir)], standalone_mode=False)
print(f"run directory: {run_dir} (results.json, config.json, a/, a-cqd/, b/)")
