"""`ct5x predict/score/convert` on directories written by transformers' save_pretrained."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece
import torch
import transformers
from synthetic_text import synthetic_sentences
from t5_parity import hf_generate

from ct5x.cli import main


@pytest.fixture(scope="module")
def hf_dir(make_hf_t5):
    return make_hf_t5(seed=5)


@pytest.fixture(scope="module")
def torch_model(hf_dir):
    return transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()


@pytest.fixture
def inputs_file(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [{"id": i, "inputs": text, "targets": text.split()[0]}
             for i, text in enumerate(synthetic_sentences(5, seed=9))]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def encode(hf_dir, texts):
    processor = sentencepiece.SentencePieceProcessor(model_file=str(hf_dir / "spiece.model"))
    rows = [processor.encode(text) + [1] for text in texts]
    tokens = np.zeros((len(rows), max(map(len, rows))), np.int64)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return processor, tokens


@pytest.mark.parametrize("beams", [1, 2])
def test_predict_matches_generate_and_ignores_batch_size(
    hf_dir, torch_model, inputs_file, tmp_path, beams
):
    outputs = []
    for batch_size in (1, 3):
        out = tmp_path / f"out{batch_size}.jsonl"
        argv = ["predict", "--checkpoint", str(hf_dir), "--input", str(inputs_file),
                "--output", str(out), "--beams", str(beams), "--max-decode-length", "8",
                "--batch-size", str(batch_size)]
        assert main(argv) == 0
        outputs.append(read_jsonl(out))
    assert outputs[0] == outputs[1]
    records = read_jsonl(inputs_file)
    assert [{k: v for k, v in o.items() if k != "prediction"} for o in outputs[0]] == records
    processor, tokens = encode(hf_dir, [r["inputs"] for r in records])
    generated = hf_generate(torch_model, tokens, 8, num_beams=beams)
    # The model's embedding (96) is larger than the vocabulary (64): ids past it decode as unk.
    size = processor.get_piece_size()
    expected = [processor.decode([t if t < size else 2 for t in row.tolist() if t > 1])
                for row in generated]
    assert [o["prediction"] for o in outputs[0]] == expected


@pytest.mark.parametrize("beams", [1, 2])
def test_predict_with_scores_gives_the_sequence_score(hf_dir, torch_model, inputs_file, tmp_path,
                                                      beams):
    """Greedy: the generated tokens' summed log-probability under transformers' forward pass;
    beams: generate's own sequences_scores (length penalty 1.0)."""
    out = tmp_path / "scored_predictions.jsonl"
    assert main(["predict", "--checkpoint", str(hf_dir), "--input", str(inputs_file),
                 "--output", str(out), "--beams", str(beams), "--max-decode-length", "8",
                 "--batch-size", "2", "--with-scores"]) == 0
    records = read_jsonl(out)
    _, tokens = encode(hf_dir, [r["inputs"] for r in records])
    input_ids = torch.from_numpy(tokens).long()
    with torch.no_grad():
        generated = torch_model.generate(
            input_ids=input_ids, attention_mask=(input_ids > 0).long(), max_new_tokens=8,
            do_sample=False, use_cache=False, num_beams=beams, return_dict_in_generate=True,
            output_scores=True,
        )
        if beams > 1:
            expected = generated.sequences_scores.numpy()
        else:
            sequences = generated.sequences
            logits = torch_model(input_ids=input_ids, attention_mask=(input_ids > 0).long(),
                                 decoder_input_ids=sequences[:, :-1]).logits
            token_lp = torch.log_softmax(logits.double(), -1).gather(
                -1, sequences[:, 1:, None])[..., 0]
            # generate pads finished rows with pad id 0 after EOS; those positions do not count.
            after_eos = (sequences[:, 1:] == 1).long().cumsum(1) - (sequences[:, 1:] == 1).long()
            expected = (token_lp * (after_eos == 0)).sum(1).numpy()
    np.testing.assert_allclose([r["score"] for r in records], expected, rtol=2e-5, atol=1e-5)
    assert main(["predict", "--checkpoint", str(hf_dir), "--input", str(inputs_file),
                 "--output", str(out), "--max-decode-length", "8"]) == 0
    assert all("score" not in r for r in read_jsonl(out))


def test_score_matches_transformers(hf_dir, torch_model, inputs_file, tmp_path):
    out = tmp_path / "scores.jsonl"
    assert main(["score", "--checkpoint", str(hf_dir), "--input", str(inputs_file),
                 "--output", str(out), "--batch-size", "2"]) == 0
    records = read_jsonl(out)
    processor, inputs = encode(hf_dir, [r["inputs"] for r in records])
    for row, record in enumerate(records):
        target = torch.tensor([processor.encode(record["targets"]) + [1]])
        with torch.no_grad():
            input_ids = torch.from_numpy(inputs[row : row + 1][:, inputs[row] > 0])
            loss = torch_model(input_ids=input_ids, labels=target).loss.item()
        assert abs(record["log_likelihood"] - (-loss * target.shape[1])) < 1e-4


def test_convert_to_t5x_then_predict_gives_the_same_predictions(hf_dir, inputs_file, tmp_path):
    t5x_dir, legacy_dir = tmp_path / "t5x", tmp_path / "legacy"
    assert main(["convert", str(hf_dir), str(t5x_dir), "--to", "t5x"]) == 0
    assert main(["convert", str(hf_dir), str(legacy_dir), "--to", "t5x",
                 "--t5x-layout", "legacy"]) == 0
    assert (legacy_dir / "checkpoint_0" / "checkpoint").is_file()
    for name, checkpoint in (("hf", hf_dir), ("t5x", t5x_dir), ("legacy", legacy_dir)):
        assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(inputs_file),
                     "--output", str(tmp_path / f"{name}.jsonl"), "--max-decode-length", "6"]) == 0
    assert read_jsonl(tmp_path / "hf.jsonl") == read_jsonl(tmp_path / "t5x.jsonl")
    assert read_jsonl(tmp_path / "hf.jsonl") == read_jsonl(tmp_path / "legacy.jsonl")


def bad_run(capsys, argv):
    capsys.readouterr()  # drop what fixtures printed
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_inputs_give_one_line_and_exit_2(hf_dir, inputs_file, tmp_path, capsys):
    out = tmp_path / "never.jsonl"
    common = ["--output", str(out)]
    missing = tmp_path / "no_such_checkpoint"
    code, err = bad_run(capsys, ["predict", "--checkpoint", str(missing), "--input",
                                 str(inputs_file), *common])
    assert code == 2 and len(err.splitlines()) == 1 and str(missing) in err

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"inputs": "fine"}\n{not json\n')
    code, err = bad_run(capsys, ["predict", "--checkpoint", str(hf_dir), "--input", str(broken),
                                 *common])
    assert code == 2 and f"{broken}:2" in err and len(err.splitlines()) == 1

    no_target = tmp_path / "no_target.jsonl"
    no_target.write_text('{"inputs": "fine"}\n')
    code, err = bad_run(capsys, ["score", "--checkpoint", str(hf_dir), "--input", str(no_target),
                                 *common])
    assert code == 2 and f"{no_target}:1" in err and "targets" in err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_vocabulary_larger_than_embedding_is_refused(make_hf_t5, inputs_file, tmp_path, capsys):
    small = make_hf_t5(seed=1, vocab_size=40)
    code, err = bad_run(capsys, ["predict", "--checkpoint", str(small), "--input",
                                 str(inputs_file), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "spiece.model" in err and len(err.splitlines()) == 1


def test_non_t5_config_is_refused(hf_dir, inputs_file, tmp_path, capsys):
    bert = tmp_path / "bert"
    shutil.copytree(hf_dir, bert)
    config = json.loads((bert / "config.json").read_text())
    config["model_type"] = "bert"
    config["architectures"] = ["BertModel"]
    (bert / "config.json").write_text(json.dumps(config))
    code, err = bad_run(capsys, ["predict", "--checkpoint", str(bert), "--input",
                                 str(inputs_file), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "config.json" in err


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    script = pathlib.Path(sys.executable).with_name("ct5x")
    result = subprocess.run(
        [str(script), "predict", "--checkpoint", str(tmp_path / "none"), "--input", "x.jsonl",
         "--output", str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


LIGHT_COMMANDS = """
import sys, time
started = time.perf_counter()
from ct5x.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in ("jax", "tensorflow", "seqio") if name in sys.modules)
print("HEAVY", heavy, round(time.perf_counter() - started, 2), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "plan", "experiments/in_domain.gin",
                                               "--no-commands"]])
def test_help_and_sweep_plan_import_neither_jax_nor_tensorflow(argv):
    result = subprocess.run([sys.executable, "-c", LIGHT_COMMANDS, *argv], capture_output=True,
                            text=True, timeout=120, check=False)
    assert "HEAVY [] " in result.stderr, result.stderr[-2000:]
    assert result.stdout.strip()
