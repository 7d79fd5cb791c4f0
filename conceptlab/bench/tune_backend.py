"""Sweeps through Ray Tune: one trial per run (sweep point x model x seed), ASHA when asked.

A config with a ``search`` block runs on the Ray backend as one Tune experiment. Every trial is a
plain run (``run_one``): the same settings hash, training and evaluation as on the local pool, so a
grid search records exactly what the local grid records. Trials reuse their worker processes, as
the local pool does, so a sweep imports torch and Lightning once per worker, not once per trial.
With ``search.asha``, each trial reports its validation loss after every validation epoch, and an
ASHA scheduler per model (its trials of every point and seed form one bracket) stops those that
fall behind; a stopped trial is recorded with ``status: stopped``, the epochs it trained and its
last validation loss. The driver records every trial exactly once, as its final result or its stop
arrives (a trial whose worker died is run again by Tune, up to ``RETRIES`` times). Ray itself is
started and checked as for the task backend (``ray_backend.ray_session``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback as LightningCallback
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ..processes import sigterm_as_exit
from .plan import RunPlan, plan_record
from .ray_backend import RETRIES, absolute, gpus_for, ray_session, run_in_worker

TUNE_FOLDER = "tune"  # Tune's own experiment state, under the bench's output folder
NO_CAP = 10**9  # ASHA's max_t: runs end by their own early stopping, never by the scheduler's cap


class _ReportEpochs(LightningCallback):
    """Reports each validation epoch's loss to Tune, where the scheduler may stop the trial."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None:
            tune.report({"val_loss": float(loss)})


def _trial(config: dict[str, Any], plans: list[RunPlan], run: Callable[..., dict[str, Any]], asha: bool) -> None:
    """One Tune trial: run its plan and hand the record to the driver as the trial's last result."""
    record = run_in_worker(plans[config["run"]], run, callbacks=[_ReportEpochs()] if asha else None)
    tune.report({"record": json.dumps(record)})  # no val_loss: the scheduler does not judge this result


class PerModelASHA(FIFOScheduler):
    """ASHA with one bracket per (benchmark, model): trials of different models never compete
    (their validation losses are not comparable). Trials of configs without ``search.asha`` run
    to their end.

    Args:
        plans: The runs, indexed by each trial's ``config["run"]``.
    """

    def __init__(self, plans: list[RunPlan]):
        super().__init__()
        self._plans = plans
        self._brackets: dict[tuple[str, str], AsyncHyperBandScheduler] = {}
        for plan in plans:
            asha = plan.spec.search.asha if plan.spec.search else None
            if asha is not None and (plan.spec.name, plan.model) not in self._brackets:
                self._brackets[plan.spec.name, plan.model] = AsyncHyperBandScheduler(
                    time_attr="training_iteration", metric="val_loss", mode="min", max_t=NO_CAP,
                    grace_period=asha.grace_epochs, reduction_factor=asha.reduction_factor)

    def _bracket(self, trial) -> AsyncHyperBandScheduler | None:
        plan = self._plans[trial.config["run"]]
        return self._brackets.get((plan.spec.name, plan.model))

    def on_trial_add(self, tune_controller, trial) -> None:
        if bracket := self._bracket(trial):
            bracket.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        bracket = self._bracket(trial)
        return bracket.on_trial_result(tune_controller, trial, result) if bracket else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if bracket := self._bracket(trial):
            bracket.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if bracket := self._bracket(trial):
            bracket.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        if bracket := self._bracket(trial):
            bracket.on_trial_error(tune_controller, trial)


class _Recorder(tune.Callback):
    """Runs in the driver: records each trial once, from its final result, its stop or its error."""

    def __init__(self, plans: list[RunPlan], record: Callable[[dict[str, Any]], None]):
        self._plans = plans
        self._record = record
        self._recorded: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        """Tune saves its callbacks with the experiment (for its own restore); conceptlab resumes
        from ``runs.jsonl`` instead, so the recording function (which holds the store's lock) stays out."""
        return {**self.__dict__, "_record": None}

    def _once(self, trial, record: dict[str, Any]) -> None:
        if trial.trial_id not in self._recorded:
            self._recorded.add(trial.trial_id)
            self._record(record)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "record" in result:
            self._once(trial, json.loads(result["record"]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        epochs = int(last.get("training_iteration", 0))
        loss = last.get("val_loss")
        self._once(trial, {**plan_record(self._plans[trial.config["run"]]), "status": "stopped", "epochs": epochs,
                           "val_loss": loss, "error": f"stopped by ASHA after {epochs} validation epochs "
                                                     f"(validation loss {loss}): behind the other trials of its model"})

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        message = (getattr(trial, "error_msg", None) or "").strip().splitlines()
        self._once(trial, {**plan_record(self._plans[trial.config["run"]]), "status": "failed",
                           "error": message[-1] if message else f"the Tune trial failed after {RETRIES} retries"})


def run_on_tune(plans: list[RunPlan], run: Callable[..., dict[str, Any]], address: str | None, cpus: int | None,
                record: Callable[[dict[str, Any]], None]) -> None:
    """Run every plan as a Ray Tune trial and ``record`` each one as it ends (see the module docs).

    Args:
        plans: The runs; their specs' ``search`` blocks say which brackets ASHA judges.
        run: ``run(plan, callbacks=...)``, the function that trains and evaluates one run.
        address: None (a new local Ray instance with ``cpus`` CPUs), "auto" or a cluster address.
        cpus: CPUs of the local instance (ignored with an address).
        record: Called in this process with each trial's record.
    """
    plans = [absolute(plan) for plan in plans]
    asha = any(plan.spec.search and plan.spec.search.asha for plan in plans)

    def resources(config: dict[str, Any]) -> dict[str, float]:
        spec = plans[config["run"]].spec
        return {"cpu": spec.resources.cpus, "gpu": gpus_for(spec)}

    with ray_session(plans, address, cpus):
        trainable = tune.with_resources(tune.with_parameters(_trial, plans=plans, run=run, asha=asha), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(list(range(len(plans))))},
            tune_config=tune.TuneConfig(scheduler=PerModelASHA(plans), reuse_actors=True),
            run_config=tune.RunConfig(
                name=time.strftime("sweep-%Y%m%d-%H%M%S"),
                storage_path=str(Path(plans[0].out_dir) / TUNE_FOLDER),
                callbacks=[_Recorder(plans, record)],
                failure_config=tune.FailureConfig(max_failures=RETRIES),
                verbose=0,
            ),
        )
        with sigterm_as_exit():
            tuner.fit()
