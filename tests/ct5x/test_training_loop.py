"""The training loop's promises across evaluations and resumes, with a stand-in trainer, data
stream and validator (scripted losses and metrics) around real checkpoints and run directories:
selection by direction, early stopping that survives a resume, refused data settings, and the
logged loss as the mean over LOG_PERIOD."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import SingleDeviceSharding
from run_records import run_record

from ct5x import training_loop
from ct5x.data_pipeline import DataSettings
from ct5x.errors import UserInputError
from ct5x.run_directory import RunDirectory
from ct5x.train_state import TrainState
from ct5x.trainer import ExecutionMetrics
from ct5x.validation import ValidationResult
from ct5x_tasks import task_info
from ct5x_tasks.naming import Variant


class ScriptedTrainer:
    """Steps a one-number 'model'; step n (1-based) reports losses[n - 1]."""

    steps_per_execution = 1
    learning_rate = staticmethod(optax.constant_schedule(0.1))

    def __init__(self, losses):
        self.losses = losses
        self.steps_run = 0

    def create_state(self, params):
        return TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros((2,))},
                          opt_state={"m": jnp.zeros((2,))})

    def train(self, state, batches):
        self.steps_run += len(batches)
        step = int(state.step)
        losses = self.losses[step:step + len(batches)]
        metrics = {"loss": jnp.asarray(losses, jnp.float32),
                   "grad_norm": jnp.ones(len(batches), jnp.float32),
                   "weight_sum": jnp.full(len(batches), 4.0, jnp.float32)}
        return TrainState(step=state.step + len(batches),
                          params={"w": state.params["w"] + len(batches)},
                          opt_state=state.opt_state), ExecutionMetrics(metrics, len(batches))

    # The state's layout, as checkpoints restore it: a step and two length-2 vectors.
    state_shapes = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32),
                              params={"w": jax.ShapeDtypeStruct((2,), jnp.float32)},
                              opt_state={"m": jax.ShapeDtypeStruct((2,), jnp.float32)})

    @property
    def state_shardings(self):
        sharding = SingleDeviceSharding(jax.devices()[0])
        return jax.tree.map(lambda _: sharding, self.state_shapes)


class ScriptedStream:
    def __init__(self, settings: DataSettings):
        self.settings = settings
        self.num_examples = 40

    def batch(self, index):
        return {"encoder_input_tokens": np.ones((2, 3), np.int32),
                "decoder_loss_weights": np.ones((2, 2), np.int32)}

    def execution(self, step, count):
        return [self.batch(index) for index in range(step, step + count)]

    def epoch_of_step(self, step):
        return step / 10


class ScriptedValidator:
    """Evaluation n (1-based, by the parameters' value) reports metrics[n - 1]."""

    def __init__(self, metrics, period):
        self.metrics, self.period = metrics, period

    def metric_names(self):
        return set(self.metrics[0])

    def run(self, trainer, params):
        evaluation = round(float(params["w"][0])) // self.period
        return ValidationResult(dict(self.metrics[evaluation - 1]), [])


DATA = DataSettings("ncbi_disease_fold0", {"inputs": 8, "targets": 8}, batch_size=2, seed=1)


def _run(model_dir, steps=6, period=2, losses=None, metrics=None, data=DATA, **fields):
    record = run_record(task=data.task_name, variant=Variant("ncbi_disease", fold=0),
                        scored_as="ncbi_disease", latest_step=0, best_step=None,
                        best_metric=None, finished=False).to_json()
    on_disk = RunDirectory(model_dir).read_run() if (model_dir / "run.json").exists() else None
    if on_disk:  # resuming, as build_run does: progress fields from run.json
        record = {**record, **on_disk}
    selection = task_info(data.task_name).selection_for(fields.pop("selection_metric", "f1"))
    settings = {"train_steps": steps, "eval_period": period, "checkpoint_period": None,
                "log_period": 1, "keep_checkpoints": 1, "selection": selection,
                "early_stopping_patience": None, **fields}
    model_dir.mkdir(exist_ok=True)
    return training_loop.Run(
        trainer=ScriptedTrainer(losses or [1.0] * steps), stream=ScriptedStream(data),
        validator=ScriptedValidator(metrics or [{"f1": 0.5, "loss": 1.0}] * steps, period),
        directory=RunDirectory(model_dir), record=record, **settings)


def _logged(model_dir, key):
    lines = RunDirectory(model_dir).metrics()
    return {line["step"]: line[key] for line in lines if key in line}


def test_loss_selects_the_lowest_and_other_metrics_the_highest(tmp_path):
    metrics = [{"f1": 0.2, "loss": 3.0}, {"f1": 0.6, "loss": 1.0}, {"f1": 0.9, "loss": 2.0}]
    by_loss = training_loop.train(
        _run(tmp_path / "loss", metrics=metrics, selection_metric="loss"), None)
    assert by_loss["best_step"] == 4 and by_loss["best_metric"]["value"] == 1.0
    by_f1 = training_loop.train(_run(tmp_path / "f1", metrics=metrics), None)
    assert by_f1["best_step"] == 6


def test_unknown_selection_metric_fails_before_training(tmp_path):
    run = _run(tmp_path, selection_metric="f2")
    with pytest.raises(UserInputError, match="SELECTION_METRIC='f2'.*f1, loss"):
        training_loop.train(run, None)
    assert run.trainer.steps_run == 0


def test_logged_loss_is_the_mean_since_the_last_log_line(tmp_path):
    losses = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0]
    training_loop.train(_run(tmp_path, losses=losses, log_period=3, period=6), None)
    assert _logged(tmp_path, "loss") == {3: pytest.approx(2.0), 6: pytest.approx(26.0 / 3)}


def _finished_early(model_dir):
    """A run with patience 1 that stops at its second evaluation (step 4 of 6)."""
    metrics = [{"f1": 0.5}, {"f1": 0.4}, {"f1": 0.9}]
    record = training_loop.train(_run(model_dir, metrics=metrics, early_stopping_patience=1),
                                 None)
    assert record["finished"] and record["early_stopped"] and record["latest_step"] == 4
    return metrics


def test_a_run_killed_after_stopping_early_stays_stopped(tmp_path):
    metrics = _finished_early(tmp_path)
    # Killed before run.json said finished: resuming must not train on.
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "finished": False}))
    run = _run(tmp_path, metrics=metrics, early_stopping_patience=1)
    record = training_loop.train(run, None)
    assert run.trainer.steps_run == 0
    assert record["finished"] and record["latest_step"] == 4 and record["best_step"] == 2


def test_early_stopping_fires_when_the_stopping_evaluation_is_redone(tmp_path):
    """Killed after the stopping evaluation's checkpoint but before run.json named it: the
    evaluation runs again on resume and its decision to stop is kept."""
    metrics = _finished_early(tmp_path)
    run_file = tmp_path / "run.json"
    before = {**json.loads(run_file.read_text()), "finished": False, "latest_step": 2,
              "evaluations_without_improvement": 0}
    del before["early_stopped"]
    run_file.write_text(json.dumps(before))
    run = _run(tmp_path, metrics=metrics, early_stopping_patience=1)
    record = training_loop.train(run, None)
    assert run.trainer.steps_run == 0
    assert record["early_stopped"] and record["latest_step"] == 4 and record["best_step"] == 2


@pytest.mark.parametrize("change, macro", [
    ({"batch_size": 4}, "BATCH_SIZE"), ({"pack": True}, "PACK"),
    ({"feature_lengths": {"inputs": 8, "targets": 16}}, "TASK_FEATURE_LENGTHS"),
    ({"task_name": "ncbi_disease_fold1"}, "MIXTURE_OR_TASK_NAME"), ({"seed": 2}, "RANDOM_SEED"),
])
def test_resume_refuses_settings_that_remap_the_data(tmp_path, change, macro):
    training_loop.train(_run(tmp_path, steps=2), None)
    (tmp_path / "run.json").write_text(
        json.dumps({**json.loads((tmp_path / "run.json").read_text()), "finished": False}))
    run = _run(tmp_path, steps=4, data=dataclasses.replace(DATA, **change))
    with pytest.raises(UserInputError, match=f"trained with {macro}=.*this run sets {macro}="):
        training_loop.train(run, None)
    assert run.trainer.steps_run == 0
