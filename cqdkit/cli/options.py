"""Click options shared by ``run``, ``table`` and ``tune`` (one definition, one help text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..losses.spec import check_lambdas, check_temperature
from .config_file import config_options

if TYPE_CHECKING:
    from ..reporting import Reporter
    from ..sweep import SweepSettings
    from ..train.config import RunConfig

F = Callable[..., Any]


def _stack(*decorators: F) -> F:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _clip_bound(value: str) -> float | str:
    """``--clip-grad-norm``: ``auto`` or a number (checked further by RunConfig)."""
    from ..errors import SpecError

    if value.strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise SpecError(f"expected a number >= 0 (0: off) or 'auto', got {value!r}") from None


def _checked(parse: Callable[[str], Any], value: Any) -> Any:
    """``parse(value)`` for a click callback (None passes through); a SpecError becomes a usage error."""
    from ..errors import SpecError

    if value is None:
        return None
    try:
        return parse(value)
    except SpecError as error:
        raise click.BadParameter(str(error)) from None


def parse_key_values(ctx: click.Context | None, param: click.Parameter | None, pairs: tuple[str, ...]) -> dict[str, str]:
    """``("a=1", "b=x")`` to ``{"a": "1", "b": "x"}`` (a click callback); a pair without ``=`` is a usage error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--dataset-option")
        parsed[key.strip()] = value.strip()
    return parsed


dataset_options = _stack(
    click.option("--dataset", default="synthetic", show_default=True, help="Dataset plugin name."),
    click.option("--root", type=click.Path(file_okay=False), help="Dataset folder (not needed for synthetic)."),
    click.option("--skip-bad", is_flag=True, help="Skip unreadable samples (listed in config.json) instead of failing."),
    click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE", callback=parse_key_values,
                 help="A dataset option, e.g. classes=20 for synthetic (repeatable)."),
)

model_options = _stack(
    click.option("--teacher", help="Teacher backbone, a cqdkit or timm name [paper: vggm; cpu: convnet-s]."),
    click.option("--student", help="Student backbone [paper: vggm; cpu: convnet-s]."),
    click.option("--pretrained/--no-pretrained", default=None,
                 help="Start from ImageNet weights (timm's hub or cache; converted MatConvNet files) or from a "
                      "seeded random init [paper profile, cub/cars/folder data: pretrained; cpu profile: not]."),
    click.option("--teacher-weights", type=click.Path(dir_okay=False),
                 help="Teacher initial weights (.safetensors, .pth, or a MatConvNet .mat)."),
    click.option("--student-weights", type=click.Path(dir_okay=False),
                 help="Student initial weights (.safetensors, .pth, or a MatConvNet .mat)."),
)

training_options = _stack(
    *config_options,
    click.option("--loss",
                 help="Distillation terms, joined with '+', each NAME[:key=value,...], e.g. softce+fitnet:student=-2 "
                      "(cqdkit plugins lists them); with --lambda auto each is kept or dropped on validation "
                      "[paper: softce; CPU profile: softce+rkd]."),
    click.option("--temperature", callback=lambda ctx, param, value: _checked(check_temperature, value),
                 help="T of the softened softmaxes, or 'auto' (chosen on validation) [paper: 10 on CUB and Cars; "
                      "else auto]."),
    click.option("--lambda", "lam", callback=lambda ctx, param, value: _checked(check_lambdas, value),
                 help="Weight of each distillation term: one for all, one per term (200,50), or 'auto' (chosen on "
                      "validation) [paper: 200 CUB, 50 Cars; else auto]."),
    click.option("--tuned", type=click.Path(dir_okay=False, exists=True),
                 help="tune.json from `cqdkit tune`: each distilled method's T and lambda per degradation (instead "
                      "of choosing them on validation)."),
    click.option("--student-seed", type=int,
                 help="Seed of the students' initialisation and data order only (the split, z and the teacher stay "
                      "those of --seed) [--seed]."),
    click.option("--epochs", type=int, help="Epochs per model [paper: 30; synthetic: CPU profile]."),
    click.option("--image-size", type=int, help="Input size (images stretched to SxS) [paper: 224]."),
    click.option("--batch-size", type=int, help="Global batch size [paper: 128]."),
    click.option("--lr", type=float, help="Learning rate of the first epoch [paper: 1e-3]."),
    click.option("--lr-end", type=float, help="Learning rate of the last epoch, linear in between [paper: 5e-5]."),
    click.option("--clip-grad-norm", callback=lambda ctx, param, value: _checked(_clip_bound, value),
                 help="Clip the gradient norm of networks without batch/group/layer norm (vgg16, vggm) at this; "
                      "0: off; auto: 1 for the deep ones (vgg16), none for the shallow ones (vggm) "
                      "[paper: 0, CPU profile: auto]."),
    click.option("--init", type=click.Choice(["auto", "lsuv", "random"]),
                 help="How a network without pretrained weights starts: random (its own init), lsuv (layer-sequential "
                      "unit variance on a batch of training images), auto (lsuv for deep networks without "
                      "normalisation layers, such as vgg16) [paper: random; CPU profile: auto]."),
    click.option("--weight-decay", type=float, default=5e-4, show_default=True),
    click.option("--momentum", type=float, default=0.9, show_default=True),
    click.option("--crop/--no-crop", default=None, help="x is the box crop ('localized'); default: when boxes exist."),
    click.option("--augment", is_flag=True, help="Random paired geometry, identical for x and z."),
    click.option("--fixed-z/--redraw-z", "fixed_train_z", default=True,
                 help="One fixed z per training image (the paper), or a new z every epoch."),
    click.option("--profile", type=click.Choice(["auto", "paper", "cpu"]), default="auto", show_default=True,
                 help="Default hyperparameters: the paper's, or CPU-sized (auto: cpu for synthetic)."),
    click.option("--val-fraction", type=float, default=0.1, show_default=True,
                 help="Share of each class's training images held out for validation (tuning, never the test split)."),
    click.option("--label-fraction", type=float, default=1.0, show_default=True,
                 help="Keep this share of each class's training labels; the other training images become "
                      "unlabelled pairs (to measure what they give)."),
    click.option("--unlabeled", type=click.Path(file_okay=False, exists=True),
                 help="A folder of unlabelled images (any layout, no classes) paired by the degradation like the "
                      "rest; only the distillation terms learn from them."),
    click.option("--distill-unlabeled/--no-distill-unlabeled", default=True, show_default=True,
                 help="Distilled students also train on the unlabelled images (cross-entropy sees labelled ones "
                      "only; A, B and A→B never see them)."),
    click.option("--folds", type=int, default=0, show_default=True,
                 help="k-fold validation over the training split instead of --val-fraction (0: off; tune runs every fold)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto."),
    click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes."),
    click.option("--compile", is_flag=True, help="torch.compile the models."),
    click.option("--amp/--no-amp", default=True, help="bf16 autocast on CUDA."),
    click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines (messages and results stay)."),
    click.option("--log-format", type=click.Choice(["rich", "json"]), default="rich", show_default=True,
                 help="rich: for people (progress bars on a terminal, one line per epoch elsewhere); "
                      "json: one JSON object per event on stdout, for machines."),
    click.option("--tensorboard", is_flag=True,
                 help="Also write TensorBoard event files (OUT/tensorboard, one sub-run per model); "
                      "needs the tensorboard package."),
)


def config_from_options(options: dict[str, Any], **overrides: Any) -> RunConfig:
    """A RunConfig from parsed click options (every option named like a RunConfig field sets it), the
    settings of ``--config`` that have no option, then ``overrides``.

    With ``--print-config`` it prints the resolved settings as JSON (a file ``--config`` reads back) and
    exits without running.
    """
    import dataclasses

    from ..train.config import RunConfig
    from .config_file import config_settings

    ctx = click.get_current_context(silent=True)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = {name: options[name] for name in fields if name in options}
    extra = config_settings(ctx) if ctx is not None else {}
    config = RunConfig(**{**values, **extra, **overrides})
    if options.get("print_config") and ctx is not None:
        import json

        check_as_a_run_would(config, options)
        settings = config.resolved().to_json()
        settings.update((name, options[name]) for name in overrides if name in options)  # e.g. table's --degrade
        own = {name: value for name, value in options.items()
               if name not in fields and name not in ("print_config", "quiet", "log_format", "resume")}
        click.echo(json.dumps({**settings, **own}, indent=2, sort_keys=True))
        ctx.exit(0)
    return config


def check_as_a_run_would(config: RunConfig, options: dict[str, Any]) -> None:
    """Check ``config`` as the command would before training (for ``--print-config``, which must not print
    settings the command refuses): the experiment of each degradation is built (the dataset read, every
    plugin, spec and network looked up); nothing is trained or written.

    Raises:
        CqdkitError: the first setting the command would refuse.
    """
    import dataclasses
    from pathlib import Path

    from ..plugin.params import split_specs
    from ..reporting import Reporter
    from ..train.experiment import Experiment

    given = options.get("degrade")
    texts = [config.degrade] if config.degrade else list(given) if isinstance(given, (list, tuple)) else [given or ""]
    for spec in (spec for text in texts for spec in split_specs(text)):
        Experiment(dataclasses.replace(config.resolved(), degrade=spec), Path("."), reporter=Reporter.silent())


def reporter_from_options(options: dict[str, Any]) -> Reporter:
    """Progress bars, per-epoch lines and messages on the error console (``--quiet``: messages only), or JSON
    events on stdout (``--log-format json``)."""
    from ..reporting import Reporter
    from .console import err_console

    return Reporter(err_console, bars=not options.get("quiet"), log_format=options.get("log_format", "rich"))


def report_result(options: dict[str, Any], reporter: Reporter, kind: str, result: dict[str, Any],
                  show: Callable[[], None]) -> None:
    """The command's final result: ``show()`` for people, or one JSON event with ``--log-format json``."""
    if options.get("log_format") == "json":
        reporter.event(kind, **result)
    else:
        show()


def write_run_report(options: dict[str, Any], reporter: Reporter, folder: str) -> None:
    """The HTML report of a finished run or table folder, unless ``--no-report``; says where it is."""
    if not options.get("report", True):
        return
    from pathlib import Path

    from ..lock import folder_lock
    from ..report import write_report

    with folder_lock(Path(folder)):
        index = write_report(Path(folder), reporter=reporter)
    reporter.message(f"report: {index}")
    reporter.event("report", path=str(index))


report_option = click.option("--report/--no-report", default=True, show_default=True,
                             help="Write the HTML report (OUT/report/index.html) at the end.")


sweep_options = _stack(
    click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Trainings at once on this machine, each in its own process (pinned to one GPU where there "
                      "are GPUs); 1: one after another in this process."),
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="local: --jobs processes here; ray: one Ray task per training on the cluster of "
                      "--ray-address (pip install 'cqdkit[ray]')."),
    click.option("--threads", type=click.IntRange(min=1),
                 help="CPU threads per training, the same under every executor so that scores do not depend on "
                      "it [1 on the CPU; with GPUs, the cores shared by the jobs]."),
    click.option("--ray-address", help="A Ray cluster's address (ray start --head prints it) or 'auto'; default: "
                                      "$RAY_ADDRESS, else a new local Ray."),
)


def sweep_from_options(options: dict[str, Any]) -> SweepSettings:
    """How a sweep command's trainings run (``--jobs``, ``--engine``, ``--threads``, ``--ray-address``)."""
    from ..sweep import SweepSettings

    return SweepSettings(jobs=options["jobs"], engine=options["engine"], threads=options["threads"],
                         address=options["ray_address"])
