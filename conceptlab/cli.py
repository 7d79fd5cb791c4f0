"""The `conceptlab` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("conceptlab")


def _bench(args: argparse.Namespace) -> int:
    if args.backend == "local" and args.workers != 1:
        from .processes import start_worker_server

        start_worker_server(["conceptlab.bench.runner"])  # workers' imports run beside this process's own
    from .bench import run_grid, write_reports
    from .bench.report import terminal_summary
    from .bench.runner import recorded_specs
    from .bench.spec import load_config, spec_from_config
    from .bench.tracking import check_tracker
    from .runtime import keep_freed_memory

    configs = [load_config(target) for target in args.targets]
    if any(raw.get("benchmark") == "counterfactuals" for raw, _ in configs):
        if len(configs) > 1:
            raise ValueError("run the counterfactual benchmark (cce) on its own: conceptlab bench cce --root PATH")
        return _bench_cce(args, *configs[0])
    keep_freed_memory()  # this process may train too (one worker)
    if args.address and args.backend != "ray":
        raise ValueError(f"--address {args.address} names a Ray cluster: add --backend ray (the local pool ignores it)")
    if args.backend == "ray":
        from .bench.ray_backend import check_reachable

        check_reachable(args.address)  # before any work: Ray alone retries an unreachable address for minutes

    specs = [
        spec_from_config(raw, name, target, quick=args.quick).with_overrides(
            models=args.models.split(",") if args.models is not None else None,
            seeds=args.seeds,
            max_epochs=args.max_epochs,
            device=args.device,
            root=args.root,
        )
        for target, (raw, name) in zip(args.targets, configs)  # each file read once
    ]
    for spec in specs:
        spec.check_ready()
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark names must differ; got {names}")
    out = Path(args.out or Path("results") / ("-".join(names) + ("-quick" if args.quick else "")))
    _check_writable(out)
    log.info("writing results to %s", out)
    check_tracker(args.logger)
    store = run_grid(specs, out, workers=args.workers, progress=not args.no_progress, tracker=args.logger,
                     backend=args.backend, address=args.address)
    # the folder's table: every benchmark and model recorded there, also by benches that ran beside this one
    specs = recorded_specs(out)
    write_reports(store.records(), specs, out, select=args.select, curves=args.curves)
    print(terminal_summary(store.records(), specs, out, select=args.select), end="")
    print(f"runs: {out}/runs.jsonl (a rerun resumes from it); `conceptlab report {out}` prints this again")
    failed = [r for r in store.records() if r.get("status") == "failed"]
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from .bench import write_reports
    from .bench.report import terminal_summary
    from .bench.runner import recorded_specs
    from .bench.store import read_records

    records: dict = {}
    for folder in map(Path, args.dirs):
        if not (folder / "runs.jsonl").exists():
            raise FileNotFoundError(f"{folder} holds no runs.jsonl: pass folders written by `conceptlab bench`")
        records.update(read_records(folder / "runs.jsonl"))
    specs = recorded_specs(*map(Path, args.dirs))  # one benchmark split over folders (by model or seed) is merged
    out = Path(args.out or args.dirs[0])
    _check_writable(out)
    write_reports(list(records.values()), specs, out, select=args.select, curves=args.curves)
    print(terminal_summary(list(records.values()), specs, out, select=args.select), end="")
    print(f"{len(records)} runs from {len(args.dirs)} folder(s); tables and plots in {out}")
    return 0


def _check_writable(out: Path) -> None:
    """Fail before any work when results could not be written to ``out``."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write results to {out} ({err.strerror or err}); pass --out with a writable directory") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _bench_cce(args: argparse.Namespace, raw: dict, name: str) -> int:
    from .bench.counterfactuals import parse_counterfactual_spec, run_counterfactual_bench, write_counterfactual_reports

    ignored = [flag for flag, value in (("--models", args.models), ("--seeds", args.seeds), ("--max-epochs", args.max_epochs),
                                        ("--device", args.device), ("--workers", args.workers), ("--address", args.address),
                                        ("--logger", args.logger)) if value is not None]
    if args.backend != "local":
        ignored.append("--backend")
    if ignored:
        raise ValueError(f"{', '.join(ignored)} do not apply to the counterfactual benchmark; set its config instead")
    spec = parse_counterfactual_spec(raw, default_name=name, quick=args.quick, root=args.root)
    spec.check_ready()
    out = Path(args.out or Path("results") / (spec.name + ("-quick" if args.quick else "")))
    _check_writable(out)
    log.info("writing results to %s", out)
    store = run_counterfactual_bench(spec, out, progress=not args.no_progress)
    print(write_counterfactual_reports(store.records(), spec, out))
    print(f"results: {out}/runs.jsonl, {out}/table.md, {out}/table.csv, {out}/precision.png, "
          f"{out}/explanation.png; demo model and bank: {out}/model.pt2, {out}/bank.pt")
    return 0


EDIT_METHODS = ("fold-mean", "prune", "prune-normalize")  # kept equal to conceptlab.models.editing.EDIT_METHODS by a test
CAV_ESTIMATORS = ("svm", "sgd", "logistic", "mean-difference")  # = concepts.cav.SOLVERS; default = TCAV_ESTIMATOR (a test)
CCE_DEFAULTS_SHOWN = {"steps": 100, "alpha": 0.078, "beta": 1e-4, "lr": 0.01, "momentum": 0.9}  # = concepts.cce.CCE_DEFAULTS (a test)
POLICY_NAMES = ("random, uncertainty, uncertainty-mean, lcp, cctp, ectp, eudtp, concept-uncertainty, oracle, oracle-mean, learned, "
                "learned-sample, "
                "coop, global-val-error, global-val-improvement, behavioural-cloning")  # kept equal to POLICIES by a test


def _rules(args: argparse.Namespace) -> int:
    from .models import DeepConceptReasoner, class_rules, load_model
    from .training.runs import load_run

    model, _, _ = load_model(args.checkpoint)  # the kind of model first: no data is built for the wrong one
    if not isinstance(model, DeepConceptReasoner):
        raise ValueError(f"{args.checkpoint} holds a {type(model).__name__}; rules come from a Deep Concept Reasoner "
                         "(bench key dcr)")
    run = load_run(args.checkpoint)
    test = run.data.test
    print(f"{Path(args.checkpoint).name}: the most frequent rules on the test split of {run.record.dataset.get('name')} "
          f"seed {run.record.seed} ({len(test)} samples)")
    for name, rules in class_rules(run.model.eval(), test.x, run.info, top=args.top).items():
        for rule, count in rules or [("(no sample predicted with a true rule)", 0)]:
            print(f"  {name} <- {rule}" + (f"   [{count} samples]" if count else ""))
    return 0


def _intervene(args: argparse.Namespace) -> int:
    import json

    from .atomic import write_atomic
    from .interventions import curve_plot, fit_policy, intervention_curve, resolve_policy
    from .training.runs import load_run

    resolve_policy(args.policy)  # an unknown name fails before anything loads
    out = Path(args.out or Path("results") / "interventions" / Path(args.checkpoint).stem)
    _check_writable(out)  # before the curves are computed, not after
    run = load_run(args.checkpoint)
    model, splits, threshold = run.model, run.data, run.record.binary_threshold
    test = splits.test
    policy = fit_policy(args.policy, model, train=splits.train, val=splits.val, groups=args.groups, seed=args.seed)
    curves = [
        intervention_curve(model, test, policy, groups=args.groups, competence=competence, repeats=args.repeats, seed=args.seed, binary_threshold=threshold)
        for competence in args.competence
    ]
    unit = "groups" if args.groups else "concepts"
    print(f"{Path(args.checkpoint).name}: task accuracy % after intervening on n {unit} ({args.policy} policy, "
          f"{args.repeats} repeats, test split of {run.record.dataset.get('name')} seed {run.record.seed})")
    print("n   " + "  ".join(f"{c.name:>24s}" for c in curves))
    for n in range(len(curves[0].accuracy_mean)):
        print(f"{n:<3d} " + "  ".join(f"{100 * c.accuracy_mean[n]:>15.2f} ± {100 * c.accuracy_std[n]:5.2f}" for c in curves))
    stem = f"interventions-{args.policy}{'-groups' if args.groups else ''}"
    curve_plot(curves, out / f"{stem}.png", title=f"{Path(args.checkpoint).stem}: {args.policy} policy", unit=unit)
    write_atomic(out / f"{stem}.json", json.dumps([c.__dict__ for c in curves], indent=1))
    print(f"plot: {out / (stem + '.png')}, curve: {out / (stem + '.json')}")
    return 0


def _tcav(args: argparse.Namespace) -> int:
    import json

    from .atomic import write_atomic
    from .concepts import relative_tcav, run_tcav, tcav_plot, write_tcav_csv
    from .concepts.examples import example_sets, load_examples
    from .models.io import load_any_model
    from .runtime import keep_freed_memory

    if not args.relative and args.random is None:
        raise ValueError("--random is required (a folder of random example sets), unless --relative compares the concepts "
                         "with each other")
    keep_freed_memory()  # large activation batches: reuse freed memory instead of fresh pages each batch
    path = Path(args.model)
    model, classes = load_any_model(path, trust_code=args.trust_model_file)
    concepts = example_sets(args.concepts, args.image_size)
    inputs = load_examples(args.inputs, args.image_size)
    layers = args.layers.split(",")
    options = dict(inputs=inputs, target=args.target, objective=args.objective, solver=args.estimator, alpha=args.alpha,
                   classes=classes or None, task=args.task)
    if args.relative:
        records = relative_tcav(model, layers, concepts, runs=args.runs or 10, **options)
    else:
        randoms = example_sets(args.random, args.image_size, args.runs)
        records = run_tcav(model, layers, concepts, randoms=randoms, integrated_steps=args.integrated_steps, **options)
    out = Path(args.out or Path("results") / "tcav" / path.stem)
    out.mkdir(parents=True, exist_ok=True)
    write_tcav_csv(records, out / "tcav.csv")
    write_atomic(out / "tcav.json", json.dumps(records, indent=1))
    kind = "relative TCAV" if args.relative else "TCAV"
    tcav_plot(records, out / "tcav.png", f"{kind} for class {records[0]['class_name']} ({args.objective})")
    print(f"{'concept':24s} {'layer':16s} score (mean ± std)  p (paper)  p (reference)  significant  CAV acc")
    for r in records:
        print(f"{r['concept']:24s} {r['layer']:16s} {r['score_mean']:.3f} ± {r['score_std']:.3f}      "
              f"{r['p_paper']:.3g}      {r['p_reference']:.3g}        {str(r['significant']):5s}        {r['cav_accuracy']:.2f}")
    print(f"results: {out}/tcav.csv, {out}/tcav.json, {out}/tcav.png")
    return 0


def _discover(args: argparse.Namespace) -> int:
    import json

    import torch

    from .atomic import write_atomic
    from .concepts.discovery import ACE, CRAFT, slic_segments
    from .concepts.discovery.plot import concept_examples_plot
    from .concepts.examples import load_examples
    from .concepts.tcav import input_target
    from .models.io import load_any_model

    path = Path(args.model)
    model, classes = load_any_model(path, trust_code=args.trust_model_file)
    images = load_examples(args.images, args.image_size)
    target = input_target(model, images, args.target, "multiclass", classes or None)
    if args.method == "ace":
        if args.random is None:
            raise ValueError("ACE scores its concepts with TCAV against random segments: give --random, a folder of images")
        pool = slic_segments(load_examples(args.random, args.image_size)).images
        generator = torch.Generator().manual_seed(args.seed)
        randoms = {f"random{r}": pool[torch.randperm(len(pool), generator=generator)[:50]] for r in range(5)}
        ace = ACE(args.concepts, seed=args.seed).fit(model, args.layer, images)
        importance, _ = ace.importance(model, images, target=target, randoms=randoms)
        found = ace.concepts(importance=importance)
    else:
        craft = CRAFT(args.concepts, patch_size=None if args.method == "ice" else args.patch_size, seed=args.seed)
        craft.fit(model, args.layer, images)
        found = craft.concepts(importance=craft.importance(model, images, target=target))
    out = Path(args.out or Path("results") / "discover" / path.stem)
    out.mkdir(parents=True, exist_ok=True)
    bank = found.save(out / "concepts.bank.pt", model)
    concept_examples_plot(found, out / "concepts.png", title=f"{args.method}: concepts of class {target}")
    ranked = [{"concept": found.names[k], "importance": float(found.importance[k]), "examples": len(found.examples[k])}
              for k in found.ranked()]
    write_atomic(out / "concepts.json", json.dumps({"method": args.method, "layer": args.layer, "class": target,
                                                     "concepts": ranked}, indent=1))
    for r in ranked:
        print(f"{r['concept']:12s} importance {r['importance']:.3f}")
    print(f"results: {bank} (a concept bank: tcav_from_bank, pcbm), {out}/concepts.png, {out}/concepts.json")
    return 0


def _cce(args: argparse.Namespace) -> int:
    import json

    from .atomic import write_atomic
    from .concepts import CAVBank
    from .concepts.cce_images import explain_images
    from .concepts.cce_plot import explanation_plot
    from .models.io import load_any_model

    model, classes = load_any_model(args.model, trust_code=args.trust_model_file)
    options = {k: v for k, v in (("steps", args.steps), ("alpha", args.alpha), ("beta", args.beta), ("lr", args.lr))
               if v is not None} | {"early_stop": args.early_stop}
    found = explain_images(model, CAVBank.load(args.bank), args.images, target=args.target, head=args.head,
                           classes=classes or None, image_size=args.image_size, published=args.published, **options)
    result, name, target = found.result, found.class_name, found.target
    out = Path(args.out or Path("results") / "cce" / Path(args.model).stem)
    records = []
    for i, file in enumerate(found.files):
        explanation = result.explanation(i, args.top)
        print(f"{file.name}: predicted {name(int(result.original_prediction[i]))}; counterfactual "
              f"{'reaches' if bool(result.success[i]) else 'does not reach'} {name(target)} "
              f"(p = {float(result.target_probability[i]):.2f}) with {int(result.support[i])} concept(s)")
        print("  add:    " + (", ".join(f"{c} ({w:+.2f})" for c, w in explanation["add"]) or "-"))
        print("  remove: " + (", ".join(f"{c} ({w:+.2f})" for c, w in explanation["remove"]) or "-"))
        explanation_plot(found.images[i], result, i, out / f"{file.stem}.png", f"{file.name}: towards {name(target)}", args.top)
        records.append({"image": str(file), "target": name(target), "prediction": name(int(result.original_prediction[i])),
                        "success": bool(result.success[i]), "target_probability": float(result.target_probability[i]),
                        "support": int(result.support[i]), **explanation})
    write_atomic(out / "cce.json", json.dumps(records, indent=1))
    print(f"figures and cce.json in {out}")
    return 0


def _edit(args: argparse.Namespace) -> int:
    from .models import ConceptEdit, apply_edits, load_model, matching_concepts, save_model, sparsity, top_concepts

    model, info, metadata = load_model(args.checkpoint)
    classes = tuple(_names(args.classes)) if args.classes else None
    edits = []
    if args.prune or args.match:
        chosen = tuple(_names(args.prune)) if args.prune else ()
        chosen += matching_concepts(info, args.match) if args.match else ()
        edits.append(ConceptEdit(tuple(dict.fromkeys(chosen)), 0.0, classes, args.method))
    for item in args.scale or []:
        name, _, factor = item.rpartition("=")
        try:
            value = float(factor)
        except ValueError:
            raise ValueError(f"--scale takes CONCEPT=FACTOR, e.g. '{name or 'has_bill_shape::hooked'}=0.5'; got {item!r}") from None
        edits.append(ConceptEdit((name,), value, classes, args.method))
    if edits:
        if not args.out:
            raise ValueError("an edit writes a new model file: pass --out PATH (the original stays as it is)")
        if Path(args.out).resolve() == Path(args.checkpoint).resolve():
            raise ValueError(f"--out {args.out} would overwrite the model it edits: pass another path (the original stays)")
        model = apply_edits(model, info, edits)
        recorded = list(metadata.get("edits", [])) + [e.to_dict() for e in edits]
        save_model(model, args.out, info, **{**metadata, "edits": recorded})
        for e in edits:
            print(f"{'pruned' if e.factor == 0 else f'scaled by {e.factor}'} ({e.method}): {', '.join(e.concepts)} "
                  f"({'classes ' + ', '.join(e.classes) if e.classes else 'every class'})")
        print(f"edited model: {args.out}")
    print(f"head sparsity: {sparsity(model):.1%} of the concept weights are zero")
    shown = top_concepts(model, info, args.top)
    for name in (classes or shown):
        print(f"{name}: " + (", ".join(f"{c} ({w:+.3f})" for c, w in shown[name]) or "no concept with positive weight"))
    if args.plot:
        from .models.head_plot import top_concepts_plot

        print(f"figure: {top_concepts_plot(model, info, args.plot, classes, args.top, Path(args.checkpoint).stem)}")
    return 0


def _explore(args: argparse.Namespace) -> NoReturn:
    try:
        from .explorer.serve import listen, open_explorer, serve
    except ImportError as err:
        raise ValueError(f"the explorer needs its web packages ({err.name} is missing): pip install -e \".[explore]\"") from None
    sock = listen(args.host, args.port)  # a taken port fails before any model loads
    try:
        explorer = open_explorer(args.paths, args.data, args.bank)
    except BaseException:
        sock.close()
        raise
    try:
        serve(explorer, sock)  # returns, or raises KeyboardInterrupt, only when a signal stopped it
    except KeyboardInterrupt:
        pass
    # Requests may still be computing in server threads (a CUB counterfactual: tens of seconds).
    # They only read; a normal interpreter exit would wait for them, so end the process now.
    print("conceptlab: interrupted; explorer stopped", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _model_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a conceptlab model file or a torch.export program (.pt2); "
                        "a pickled nn.Module needs --trust-model-file")
    parser.add_argument("--trust-model-file", action="store_true",
                        help="allow a pickled nn.Module: loading it runs code stored in the file; only for trusted files")


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", default="val_task_accuracy",
                        choices=["val_task_accuracy", "val_task_balanced_accuracy", "val_task_r2", "val_concept_accuracy",
                                 "val_concept_auc"],  # bench.report.SELECTABLE, written out: bench loads late
                        help="validation metric that picks each model's sweep point (never a test metric)")
    parser.add_argument("--curves", action="store_true", help="also plot per-epoch training and validation losses")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conceptlab", description="Concept-based interpretable machine learning.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="run a benchmark grid (datasets x models x seeds) and write tables and plots")
    bench.add_argument("targets", nargs="+", help="bundled benchmark names (xor, trig, dot, cub100, cub, cce) or .yaml config paths")
    bench.add_argument("--root", help="CUB and cce only: the directory holding CUB_200_2011/")
    bench.add_argument("--models", help="comma-separated model keys (default: all in the config)")
    bench.add_argument("--seeds", type=_positive_int, help="number of seeds; each seed draws new data and a new initialisation")
    bench.add_argument("--max-epochs", type=_positive_int, help="override the epoch limit")
    bench.add_argument("--device", choices=["auto", "cpu", "cuda", "gpu", "mps"], help="Lightning accelerator (default: config, auto)")
    bench.add_argument("--workers", type=_positive_int,
                       help="parallel runs (default: one per CPU core; 1 on a GPU); with --backend ray and no "
                            "--address, the CPUs of the local Ray instance")
    bench.add_argument("--backend", choices=["local", "ray"], default="local",
                       help="local: a process pool on this machine; ray: one Ray task per run (pip install -e \".[ray]\")")
    bench.add_argument("--address", help="with --backend ray: 'auto', HOST:PORT or ray://HOST:PORT of a running cluster "
                                         "(default: start a local Ray instance)")
    bench.add_argument("--logger", choices=["tensorboard", "mlflow"],
                       help="also log every epoch to TensorBoard (OUT/tensorboard) or MLflow ($MLFLOW_TRACKING_URI, "
                            "default OUT/mlflow.db)")
    bench.add_argument("--out", help="output directory (default: results/NAME)")
    bench.add_argument("--quick", action="store_true", help="few seeds and epochs: a smoke run of about a minute")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _report_options(bench)
    bench.set_defaults(handler=_bench, on_interrupt="finished runs are saved and a rerun resumes from them")

    report = commands.add_parser("report", help="render tables and plots again from result folders, merging them")
    report.add_argument("dirs", nargs="+", help="folders written by `conceptlab bench` (runs.jsonl and specs.json)")
    report.add_argument("--out", help="where to write the tables and plots (default: the first folder)")
    _report_options(report)
    report.set_defaults(handler=_report)

    intervene = commands.add_parser("intervene", help="intervention curve of a saved model on its test data")
    intervene.add_argument("checkpoint", help="a model file written by conceptlab (e.g. DIR/checkpoints/*.pt of a bench)")
    intervene.add_argument("--policy", default="random", metavar="POLICY", help=f"order of interventions: {POLICY_NAMES} "
                           "(oracle and lcp read the labels; learned needs an intcem model and --groups)")
    intervene.add_argument("--groups", action="store_true", help="intervene on concept groups instead of single concepts")
    intervene.add_argument("--competence", type=float, nargs="+", default=[1.0],
                           help="fraction of correct intervention values (1: all correct, 0: all wrong); several allowed")
    intervene.add_argument("--repeats", type=_positive_int, default=5, help="random orders drawn per curve")
    intervene.add_argument("--seed", type=int, default=0, help="seed of the random orders")
    intervene.add_argument("--out", help="output directory (default: results/interventions/CHECKPOINT)")
    intervene.set_defaults(handler=_intervene)

    rules = commands.add_parser("rules", help="a Deep Concept Reasoner's rules per class on its test data")
    rules.add_argument("checkpoint", help="a DCR model file written by conceptlab bench (DIR/checkpoints/*.pt)")
    rules.add_argument("--top", type=_positive_int, default=3, help="rules listed per class")
    rules.set_defaults(handler=_rules)

    tcav = commands.add_parser("tcav", help="TCAV scores with significance for a model's class")
    _model_file_options(tcav)
    tcav.add_argument("--layers", required=True, help="comma-separated dotted layer names, e.g. layer3,layer4")
    tcav.add_argument("--concepts", required=True, help="directory with one folder of examples (images or .pt) per concept")
    tcav.add_argument("--random", help="directory with one folder of random examples per random set (not with --relative)")
    tcav.add_argument("--inputs", required=True, help="folder of the inputs to explain (examples of the target class)")
    tcav.add_argument("--target", required=True, help="class index, or class name for conceptlab models")
    tcav.add_argument("--runs", type=_positive_int, help="number of random sets to use (default: all)")
    tcav.add_argument("--objective", default="logit", choices=["logit", "loss"], help="differentiate the logit or the loss")
    tcav.add_argument("--estimator", default="logistic", choices=CAV_ESTIMATORS,
                      help="how each CAV is fitted (benchmarks/tcav_causal.py compares them; default logistic)")
    tcav.add_argument("--alpha", type=float, default=0.05, help="significance level")
    tcav.add_argument("--image-size", type=_positive_int, default=224, help="image examples are resized and centre-cropped to this")
    tcav.add_argument("--relative", action="store_true", help="relative TCAV: each concept against the other concepts")
    tcav.add_argument("--task", default="multiclass", choices=["multiclass", "multilabel", "regression"],
                      help="what --target indexes: a class, a label, or a regression output")
    tcav.add_argument("--integrated-steps", type=_positive_int,
                      help="integrated gradients along the activation path with this many points (default: plain gradients)")
    tcav.add_argument("--out", help="output directory (default: results/tcav/MODEL)")
    tcav.set_defaults(handler=_tcav)

    discover = commands.add_parser("discover", help="concepts discovered without labels (CRAFT, ICE, ACE), saved as a concept bank")
    _model_file_options(discover)
    discover.add_argument("--layer", required=True, help="dotted layer name (non-negative activations for craft and ice)")
    discover.add_argument("--images", required=True, help="folder of images of the class to explain")
    discover.add_argument("--target", required=True, help="class index, or class name for conceptlab models")
    discover.add_argument("--method", default="craft", choices=["craft", "ice", "ace"], help="how concepts are found")
    discover.add_argument("--concepts", type=_positive_int, default=10, help="concepts (craft, ice) or clusters (ace)")
    discover.add_argument("--patch-size", type=_positive_int, default=64, help="crop side in pixels (craft)")
    discover.add_argument("--random", help="folder of random images (ace: its TCAV scores)")
    discover.add_argument("--image-size", type=_positive_int, default=224, help="images are resized and centre-cropped to this")
    discover.add_argument("--seed", type=int, default=0)
    discover.add_argument("--out", help="output directory (default: results/discover/MODEL)")
    discover.set_defaults(handler=_discover)

    edit = commands.add_parser("edit", help="show a concept head's top concepts per class; prune or reweight concepts")
    edit.add_argument("checkpoint", help="a PCBM or CBM model file written by conceptlab")
    edit.add_argument("--prune", help="comma-separated concept names whose weights become zero")
    edit.add_argument("--match", metavar="REGEX", help="also prune every concept whose name this regular expression finds")
    edit.add_argument("--scale", nargs="+", metavar="CONCEPT=FACTOR", help="multiply a concept's weights, e.g. stripes=0.5")
    edit.add_argument("--classes", help="comma-separated class names the edits apply to (default: every class)")
    edit.add_argument("--method", choices=EDIT_METHODS, default="fold-mean",
                      help="fold-mean: a PCBM's removed term moves to the concept's training mean (default); prune: the "
                           "paper's Prune, weight scaled, bias kept; prune-normalize: the paper's Prune+Normalize, the "
                           "class's remaining weights rescaled to their previous L1 norm")
    edit.add_argument("--top", type=_positive_int, default=5, help="concepts listed per class")
    edit.add_argument("--out", help="where to write the edited model (required with an edit)")
    edit.add_argument("--plot", metavar="PNG", help="also draw the top concepts of the chosen classes (default: the first six)")
    edit.set_defaults(handler=_edit)

    explore = commands.add_parser("explore", help="interactive explorer in the browser: correct concepts by hand, watch the prediction")
    explore.add_argument("paths", nargs="+", metavar="PATH",
                         help="model files or folders written by `conceptlab bench` (every concept model in them)")
    explore.add_argument("--data", metavar="ROOT", help="CUB only: the directory holding CUB_200_2011/, when not where training read it")
    explore.add_argument("--bank", help="a concept bank (CAVBank.save) on the models' inputs, for counterfactuals "
                                        "(default: NAME.bank.pt beside each checkpoint, if any)")
    explore.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    explore.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port, printed)")
    explore.set_defaults(handler=_explore)

    cce = commands.add_parser("cce", help="conceptual counterfactuals: which concepts to add or remove to reach a class")
    _model_file_options(cce)
    cce.add_argument("--bank", required=True, help="a concept bank written by CAVBank.save (e.g. by `conceptlab bench cce`)")
    cce.add_argument("--images", required=True, nargs="+", help="image files or folders of images to explain")
    cce.add_argument("--target", required=True, help="class index, or class name when the model or bank names classes")
    cce.add_argument("--head", help="module whose input is the embedding the bank was fitted on (default: the bank's)")
    cce.add_argument("--published", action="store_true",
                     help="the published solver (softmax then cross-entropy, subgradient L1, alpha 0.1 / K) instead of the defaults")
    defaults = CCE_DEFAULTS_SHOWN
    cce.add_argument("--steps", type=_positive_int, help=f"solver steps (default {defaults['steps']})")
    cce.add_argument("--alpha", type=float, help="L1 penalty per unit concept weight, the same whatever the number of "
                     f"concepts: sparser explanations when larger (default {defaults['alpha']:g})")
    cce.add_argument("--beta", type=float, help=f"L2 penalty per unit concept weight (default {defaults['beta']:g})")
    cce.add_argument("--lr", type=float, help=f"SGD learning rate, momentum {defaults['momentum']:g} (default {defaults['lr']:g})")
    cce.add_argument("--early-stop", action="store_true", help="stop each image once its counterfactual reaches the target")
    cce.add_argument("--top", type=_positive_int, default=5, help="concepts listed per direction")
    cce.add_argument("--image-size", type=_positive_int, help="resize and centre-crop side (default: the bank's, else 224)")
    cce.add_argument("--out", help="output directory (default: results/cce/MODEL)")
    cce.set_defaults(handler=_cce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"conceptlab: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that is a directory, under a file, unwritable, ...
        where = f" {err.filename}" if err.filename else ""
        print(f"conceptlab: error: cannot use{where}: {err.strerror or err}; check the paths you passed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        note = getattr(args, "on_interrupt", None)
        print("conceptlab: interrupted" + (f"; {note}" if note else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
