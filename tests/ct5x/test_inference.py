"""predict_file and score_file jit the model's plain functions once per file."""

import json

import numpy as np
import pytest
from synthetic_text import synthetic_sentences

from ct5x.checkpoints import load_checkpoint
from ct5x.inference import predict_file, score_file
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.vocabulary import load_vocabulary


class TracingModel(EncoderDecoderModel):
    """Counts how often JAX traces each function: once per compiled shape."""

    def __init__(self, config):
        super().__init__(config)
        self.traces = {"predict": 0, "score": 0}

    def predict_batch_with_aux(self, params, batch, options):
        self.traces["predict"] += 1
        return super().predict_batch_with_aux(params, batch, options)

    def score_batch(self, params, batch):
        self.traces["score"] += 1
        return super().score_batch(params, batch)


@pytest.fixture(scope="module")
def loaded(make_hf_t5):
    checkpoint = load_checkpoint(make_hf_t5(seed=3))
    return TracingModel(checkpoint.config), checkpoint.params, load_vocabulary(checkpoint)


def test_a_file_of_several_batches_compiles_once(loaded, tmp_path):
    model, params, vocabulary = loaded
    inputs = tmp_path / "in.jsonl"
    texts = synthetic_sentences(7, seed=4)
    inputs.write_text("".join(json.dumps({"inputs": t, "targets": t.split()[-1]}) + "\n"
                              for t in texts))
    options = DecodingOptions(max_decode_length=6)
    plain = predict_file(model, params, vocabulary, str(inputs), str(tmp_path / "p.jsonl"),
                         options, batch_size=3)
    scored = predict_file(model, params, vocabulary, str(inputs), str(tmp_path / "s.jsonl"),
                          options, batch_size=3, with_scores=True)
    score_file(model, params, vocabulary, str(inputs), str(tmp_path / "ll.jsonl"), batch_size=3)
    # Three batches per file; one trace per file (each call jits afresh).
    assert model.traces == {"predict": 2, "score": 1}
    assert [r["prediction"] for r in plain] == [r["prediction"] for r in scored]
    assert "score" not in plain[0]
    scores = np.array([r["score"] for r in scored])
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)
