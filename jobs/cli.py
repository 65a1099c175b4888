"""`selfalign` command line: sample, run, status, plan, report, export, evaluate, benchmarks.

The one way to launch anything: `selfalign ...` locally and on Databricks (wheel entry
point), `spark-submit jobs/submit.py ...` on EMR and other spark-submit clusters.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jobs.core.config import ConfigError, PipelineConfig, load_config
from jobs.core.failures import StageError, describe_failure, operator_fixable, root_cause

if TYPE_CHECKING:
    from jobs.core.context import Context
    from jobs.core.lease import Lease

log = logging.getLogger("selfalign")


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None,
                        help="YAML config (default: the packaged conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. dedup.threshold=0.6")
    parser.add_argument("--profile", dest="profiles", action="append", default=[], metavar="NAME",
                        help="merge a profile over the config: a packaged one (published, "
                             "selfcodealign) or a YAML file; --set still applies last")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is logged, not to the stream that
    was current when the CLI first ran (a later `main` call in the same process, as in
    tests or notebooks, may have replaced or closed that one)."""

    @property
    def stream(self) -> Any:  # pyright: ignore[reportIncompatibleVariableOverride]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _setup_logging() -> None:
    # Our own handler: under spark-submit the root logger is already configured by
    # others, and basicConfig would then silently do nothing.
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _load(args: argparse.Namespace) -> PipelineConfig:
    return load_config(args.config, args.overrides, args.profiles)


def cmd_sample(args: argparse.Namespace) -> int:
    from jobs.tools.sample import run_sample

    stats = run_sample(_load(args))
    print(f"sample: {stats}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from jobs.core.context import Context, chosen_run_id
    from jobs.core.lease import lake_lease, local_lease
    from jobs.core.registry import stages_to_run

    cfg = _load(args)
    try:
        stages = stages_to_run(cfg, args.stages, args.until, args.start)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    run_id = chosen_run_id(args.run_id)
    early = local_lease(cfg.lake.root, run_id, cfg.run.lease_seconds)
    try:
        ctx = Context.create(cfg, run_id)
        if problem := ctx.lake.write_problem():
            raise ConfigError(problem)
    except BaseException:
        if early is not None:
            early.release()
        raise
    with lake_lease(ctx, early) as lease:
        code = _run_stages(ctx, stages, args, lease)
    if not args.no_status:
        _print_status_safely(ctx)
    return code


def _run_stages(ctx: Context, stages: list[str], args: argparse.Namespace, lease: Lease | None) -> int:
    from jobs.core.registry import ENGINE_STAGES, stage_named
    from jobs.core.runner import run
    from jobs.core.unchanged import IdleLedger

    cfg = ctx.cfg
    log.info("run %s: stages %s", ctx.run_id, ", ".join(stages))
    ledger = IdleLedger(ctx)
    code = 0
    try:
        for name in stages:
            if lease is not None and lease.lost:
                raise ConfigError(f"lost the lake's lease to {lease.lost} (not renewed for "
                                  f"run.lease_seconds): stopped before {name}")
            stage = stage_named(name)
            if ledger.skips(stage):
                continue
            try:
                ledger.finished(stage, run(stage, ctx))
            except StageError as exc:
                # The embedded default has no model: a whole-DAG run stops cleanly where
                # generation starts. Asking for a generation stage by name is an error.
                no_engine = name in ENGINE_STAGES and cfg.llm.engine == "none" and not args.stages
                print(f"selfalign: {'stopped' if no_engine else 'error'}: {exc}", file=sys.stderr)
                code = 0 if no_engine else 2
                break
            except ConfigError:
                raise
            except Exception as exc:  # a failed Spark job
                code = _report_failure(name, exc)
                break
    finally:
        ledger.save()
    return code


def _report_failure(stage: str, exc: Exception) -> int:
    """The full trace for the log, then one line for people; exit code 2 for what the
    operator repairs (a damaged table), else 1."""
    log.exception("[%s] failed", stage)
    print(f"selfalign: error: {describe_failure(stage, exc)}", file=sys.stderr)
    return 2 if operator_fixable(exc) else 1


def _print_status_safely(ctx: Context) -> None:
    from jobs.tools.status import print_status

    try:
        print_status(ctx)
    except Exception as exc:  # status after a failure must not hide the failure's message
        print(f"selfalign: status unavailable: {describe_failure('status', exc)}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    from jobs.core.context import Context
    from jobs.tools.status import print_status

    print_status(Context.create(_load(args)))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from jobs.core.context import Context
    from jobs.tools.plan import make_plan, plan_json, render_plan

    ctx = Context.create(_load(args))
    plans = make_plan(ctx, args.nights)
    print(plan_json(plans) if args.json else render_plan(plans, ctx.lake.describe()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from jobs.core.context import RUN_ID_ENV, Context
    from jobs.tools.report import build_report

    # A nightly job's report task reports its own night: the id every task was given.
    run_id = args.run_id or os.environ.get(RUN_ID_ENV) or None
    index = build_report(Context.create(_load(args)), run_id, args.out, args.nights)
    print(f"report: {index}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from jobs.core.context import Context
    from jobs.stages.export import export_dataset

    info = export_dataset(Context.create(_load(args)), args.format, args.out)
    counts = ", ".join(f"{name} {split['num_examples']}" for name, split in info["splits"].items())
    print(f"export: {args.out} ({args.format}): {counts}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from jobs.core.context import Context
    from jobs.stages.evaluate import load, report, run_evaluation

    overrides = list(args.overrides)
    if args.reference:
        overrides.append("evaluate.reference=true")
    if args.sets:
        overrides.append(f"evaluate.sets=[{args.sets}]")
    if args.limit is not None:
        overrides.append(f"evaluate.limit={args.limit}")
    cfg = load_config(args.config, overrides, args.profiles)
    problems = load(cfg)  # a missing benchmark file fails here, before Spark starts
    outcome = run_evaluation(Context.create(cfg), problems)
    print(report(outcome))
    # The self-test fails when any reference solution fails.
    return 1 if cfg.evaluate.reference and outcome.failures else 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobs.tools.benchmarks import download_command

    cfg = _load(args)  # its evaluate.files may name an optional file (the published MBPP+ v0.1.0)
    return download_command(Path(args.dir or cfg.benchmarks.dir),
                            names=set(cfg.evaluate.benchmark_files.values()))


DESCRIPTION = """\
Build instruction-tuning data for code models from The Stack, the way
StarCoder2-Instruct was built: seed functions, concepts, instructions, responses
with their own tests run in a sandbox. Every stage writes a Delta table."""

EXAMPLES = """\
examples:
  selfalign run                                  the whole DAG on conf/local.yaml
  selfalign run --until dedup                    the seed stages only
  selfalign run -c my.yaml --set lake.root=s3://bucket/lake
  selfalign status                               where the lake stands
  selfalign plan                                 what tonight's run would do and cost
  selfalign report && selfalign export --out out/sft"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfalign")
    except PackageNotFoundError:  # a source tree on PYTHONPATH (spark-submit of jobs/submit.py)
        return "unknown (not installed)"


def _run_epilog() -> str:
    from jobs.core.registry import STAGES

    return ("stages, in DAG order:\n  " + " -> ".join(STAGES) + "\n\n"
            "examples:\n"
            "  selfalign run                             every stage; stops before judge without a model\n"
            "  selfalign run --until dedup               extract, decontaminate, typecheck, dedup\n"
            "  selfalign run --from judge --set llm.engine=openai --set llm.base_url=http://host:8000/v1\n"
            "  selfalign run --stages typecheck,dedup    just these (kept in DAG order)")


class _Parser(argparse.ArgumentParser):
    """An epilog computed only when help is shown: listing the stages imports every stage
    module (and pyspark), which `selfalign --version` or a config error should not wait for."""

    epilog_factory: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()


def cmd_train(args: argparse.Namespace) -> int:
    from jobs.core.context import Context
    from jobs.core.runner import run
    from jobs.stages import train

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides, args.profiles)
    train.require_packages()  # before Spark starts
    run(train.STEP, Context.create(cfg))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfalign", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"selfalign {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)

    sample = sub.add_parser("sample", help="build the sample corpus parquet from local Python sources")
    _config_options(sample)
    sample.set_defaults(func=cmd_sample)

    run = sub.add_parser("run", help="run the pipeline stages in order",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.epilog_factory = _run_epilog
    _config_options(run)
    run.add_argument("--stages", help="comma-separated stages to run (DAG order is kept)")
    run.add_argument("--until", help="run every stage up to and including this one")
    run.add_argument("--from", dest="start", help="start the DAG at this stage")
    run.add_argument("--no-status", action="store_true", help="do not print status at the end")
    run.add_argument("--run-id", help="the run id to record (default: $SELFALIGN_RUN_ID, else a "
                     "new one): every task of a nightly job passes the job's, so the night is one run")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="row counts, rejects and last run of every table")
    _config_options(status)
    status.set_defaults(func=cmd_status)

    plan = sub.add_parser("plan", help="what a run would do now: pending rows, expected output, "
                          "tokens, GPU-hours and cost from the last nights")
    _config_options(plan)
    plan.add_argument("--json", action="store_true", help="JSON for schedulers instead of a table")
    plan.add_argument("--nights", type=int, default=7, help="nights of history the rates come from")
    plan.set_defaults(func=cmd_plan)

    report = sub.add_parser("report", help="HTML report with charts: funnel, rejects, pass rates, "
                            "trends over the last nights, examples with their lineage")
    _config_options(report)
    report.add_argument("--run-id", help="run to report on (default: $SELFALIGN_RUN_ID, else the "
                        "newest in `runs`)")
    report.add_argument("--out", default="reports", help="directory for <run-id>/index.html")
    # 14 is report_trends.NIGHTS, not imported: the parser must load without pyspark.
    report.add_argument("--nights", type=_positive, default=14,
                        help="nights (run ids) the trends page covers, up to the reported run (default 14)")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="write the sft table as JSONL or Parquet with a dataset card")
    _config_options(export)
    export.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="file format")
    export.add_argument("--out", required=True, help="directory for the split files, README.md "
                        "and dataset_info.json")
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser("evaluate", help="HumanEval(+)/MBPP(+) pass@k of llm.model in the sandbox")
    _config_options(evaluate)
    evaluate.add_argument("--reference", action="store_true",
                          help="self-test: score each task's reference solution (no engine)")
    evaluate.add_argument("--sets", help="comma-separated: humaneval,humanevalplus,mbpp,mbppplus")
    evaluate.add_argument("--limit", type=int, help="the first N tasks of each set")
    evaluate.set_defaults(func=cmd_evaluate)

    train_cmd = sub.add_parser("train", help="fine-tune train.base_model on the sft table (train extra)")
    _config_options(train_cmd)
    train_cmd.add_argument("--output-dir", help="where the checkpoint goes (default: train.output_dir)")
    train_cmd.set_defaults(func=cmd_train)

    bench = sub.add_parser("benchmarks", help="benchmark data for decontamination/evaluation")
    bench_sub = bench.add_subparsers(dest="action", required=True)
    download = bench_sub.add_parser("download", help="fetch MBPP, HumanEval+ and MBPP+")
    _config_options(download)
    download.add_argument("--dir", help="target directory (default: benchmarks.dir)")
    download.set_defaults(func=cmd_benchmarks)
    return parser


def guarded(action: Callable[[], int], command: str = "selfalign") -> int:
    """Run an action; operator-facing errors become one line on stderr and exit code 2,
    anything unexpected one line with its root cause and exit code 1 (SELFALIGN_TRACE=1
    shows the traceback)."""
    try:
        return _errors_as_lines(action)
    except Exception as exc:
        if os.environ.get("SELFALIGN_TRACE"):
            raise
        print(f"selfalign: error: {command} failed: {root_cause(exc)[:500]} "
              "(SELFALIGN_TRACE=1 shows the traceback)", file=sys.stderr)
        return 1


def _errors_as_lines(action: Callable[[], int]) -> int:
    try:
        return action()
    except (ConfigError, StageError) as exc:
        print(f"selfalign: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"selfalign: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in ("pyspark", "delta"):
            raise
        print(f"selfalign: error: {exc.name} is not installed: on a cluster, run under its Spark; "
              "locally, pip install 'selfalign[spark]'", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> None:
    _setup_logging()
    args = build_parser().parse_args(argv)
    sys.exit(guarded(lambda: args.func(args), args.command))


if __name__ == "__main__":
    main()
