"""run.json through its one reader: schema 2 round trips, schema 1 (ct5x 0.1) still reads, and
every unusable record is an error naming the file and the field, for reader and writer alike."""

import json

import pytest
from run_records import run_record, write_run_record

from ct5x.run_directory import RunDirectory
from ct5x.run_record import RunRecordError, read_run_record
from ct5x_tasks.catalog import Selection

# A run.json as ct5x 0.1 wrote it: no schema_version, no anchor mode, selection or scoring.
SCHEMA_1 = {
    "model": "T5-Den", "task": "stigma_other_fold2_pct5", "base_task": "stigma_other",
    "variant": {"flan": False, "deid": False, "site": None, "fold": 2, "fraction": 0.05},
    "initial_checkpoint": "/ckpt/t5", "learning_rate": 1e-4, "seed": 42, "train_examples": 30,
    "train_steps": 20, "latest_step": 20, "best_step": 10,
    "best_metric": {"name": "macro_f1", "value": 0.5}, "finished": True, "ct5x_version": "0.1.0",
    "task_feature_lengths": {"inputs": 512, "targets": 20},
    "data_settings": {"data_dir": "/data", "dataset_dirs": {}, "site_dirs": {},
                      "folds_dir": None},
    "vocabulary": "/run/spiece.model", "evaluations_without_improvement": 1,
}


def test_schema_2_round_trips_through_the_writer_and_the_reader(tmp_path):
    record = run_record(selection=Selection("loss", higher_is_better=False),
                        anchor_compatible=True)
    write_run_record(tmp_path, record)
    assert read_run_record(tmp_path) == record
    assert read_run_record(tmp_path / "run.json") == record
    assert RunDirectory(tmp_path).read_run() == record.to_json()
    assert read_run_record(tmp_path / "absent") is None  # no run.json yet: not an error


def test_schema_1_records_still_read(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(SCHEMA_1))
    record = read_run_record(tmp_path)
    assert record.schema_version == 1 and record.checkpoint_step == 10
    assert record.variant.fraction == 0.05 and record.base_task == "stigma_other"
    # Schema 1 always took higher as better; the mode and the scoring were not recorded.
    assert record.selection == Selection("macro_f1", higher_is_better=True)
    assert (record.anchor_compatible, record.scored_as, record.batch_size) == (None, None, None)
    assert record.data_settings.on_bad_record is None


@pytest.mark.parametrize("change, message", [
    ({"finished": "yes"}, "field 'finished' must be bool"),
    ({"best_step": True}, "field 'best_step' must be int or null"),
    ({"task": "stigma_other_fold3"}, "name task 'stigma_other_fold2_pct5', not 'stigma_other_"),
    ({"variant": {**SCHEMA_1["variant"], "fold": 9}}, "fold must be in 0-4"),
    ({"best_metric": {"name": "f1", "value": float("nan")}}, "finite value"),
    ({"data_settings": {"data_root": "/x"}}, "unknown data_settings keys data_root"),
    ({"colour": "blue"}, "unknown field 'colour'"),
    ({"schema_version": 3}, "written by a newer ct5x"),
    ({"schema_version": 2}, "field 'anchor_compatible' must be bool"),
])
def test_a_bad_record_is_an_error_naming_the_file_and_field(tmp_path, change, message):
    (tmp_path / "run.json").write_text(json.dumps({**SCHEMA_1, **change}))
    with pytest.raises(RunRecordError, match=message) as raised:
        read_run_record(tmp_path)
    assert str(raised.value).startswith(str(tmp_path / "run.json"))


def test_invalid_json_names_the_line_and_the_writer_refuses_what_readers_would(tmp_path):
    (tmp_path / "run.json").write_text('{\n"model": ')
    with pytest.raises(RunRecordError, match=r"run.json:2: not valid JSON"):
        read_run_record(tmp_path)
    # The trainer's writer checks a record as the readers do: a field no schema has is refused.
    with pytest.raises(RunRecordError, match="unknown field 'batchsize'"):
        RunDirectory(tmp_path).write_run({**run_record().to_json(), "batchsize": 8})
