"""cqdkit's Python API end to end: make (x, z) pairs, train teacher A on x, distil it into a student on z
(A+CQD: CQD starting from A's weights), and evaluate on the high- (x) and low-quality (z) test views, next
to B (the same network trained on z alone). x is the object's box crop, z the whole cluttered image.

    python examples/api_end_to_end.py                 # the CPU profile: 12 classes, 64 px, 8 epochs
    python examples/api_end_to_end.py --tiny          # 3 classes, 32 px, 1 epoch: seconds (what CI runs)

``CQDKIT_EXAMPLE_SIZE=tiny`` does the same as ``--tiny``.
"""

import argparse
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cqdkit import Experiment, PairedDataset, RunConfig, load_dataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", default=os.environ.get("CQDKIT_EXAMPLE_SIZE") == "tiny")
parser.add_argument("--out", type=Path, default=Path("runs/api-example"), help="where models and results go")
args = parser.parse_args()

tiny = {"epochs": 1, "image_size": 32, "batch_size": 8,
        "dataset_options": {"classes": 3, "train_per_class": 8, "test_per_class": 4, "image_size": 48}}
config = RunConfig(degrade="localization", method="a-cqd", **(tiny if args.tiny else {})).resolved()

# 1. Pairs: each image's high-quality view x and the low-quality view z made from it automatically.
data = load_dataset(config.dataset, **config.dataset_options)
pairs = PairedDataset(data.test[:4], config.degrade, split="test", size=config.image_size, crop=data.has_boxes)
rows = [np.hstack([s.x.permute(1, 2, 0).numpy(), s.z.permute(1, 2, 0).numpy()]) for s in pairs]
args.out.mkdir(parents=True, exist_ok=True)
plt.imsave(args.out / "pairs.png", np.vstack(rows))
print(f"{data.num_classes} classes, {len(data.train)} training images; x | z pairs in {args.out / 'pairs.png'}")

# 2. Models: A on x (the teacher), B on z alone, and the A+CQD student on z, distilled from A.
experiment = Experiment(config, args.out)
experiment.write_config()  # config.json: everything needed to reproduce (or re-evaluate) the models
for method in ("a", "b", "a-cqd"):
    scores = experiment.evaluate(method)  # trains the method's model on first use (A only once)
    print(f"{method:>5}: test accuracy on x {100 * scores['test_x']:5.1f}%, on z {100 * scores['test_z']:5.1f}%")

# 3. The student on new images (eval mode, the run's preprocessing): here z views of test images.
student = experiment.predictor("a-cqd")
print("a-cqd predicts", student.predict([s.z.permute(1, 2, 0).numpy() for s in pairs]).names)
