"""A trained model in a notebook: eval mode, predict() with the run's preprocessing, the test set's z view on
request, the same model again from the run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cqdkit
from cqdkit.errors import CqdkitError, DataError
from cqdkit.reporting import Reporter
from cqdkit.testing.distillers import TINY_RUN
from cqdkit.train.config import RunConfig
from cqdkit.train.evaluate import predict
from cqdkit.train.experiment import Experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    folder = tmp_path_factory.mktemp("predictor")
    config = RunConfig(**{**TINY_RUN, "degrade": "tps", "epochs": 1})
    return Experiment(config, folder / "run", reporter=Reporter.silent())


def test_a_trained_model_comes_back_in_eval_mode(experiment: Experiment) -> None:
    trained = experiment.train_or_load("b")
    assert all(not module.training for module in trained.model.modules())
    # loaded from the finished run (not trained, not validated in this process): eval mode too
    again = Experiment(experiment.config, experiment.directory, resume=True, reporter=Reporter.silent())
    loaded = again.train_or_load("b")
    assert loaded.fit.resumed_from == experiment.config.epochs  # finished: loaded, nothing trained
    assert all(not module.training for module in loaded.model.modules())


def test_predicting_changes_nothing_in_the_model(experiment: Experiment) -> None:
    predictor = experiment.predictor("b")
    before = {key: value.clone() for key, value in predictor.model.state_dict().items()}
    image, box = experiment.test_set._source(experiment.test_set.records[0])
    first = predictor.predict(image, boxes=[box]).logits
    assert np.array_equal(predictor.predict(image, boxes=[box]).logits, first)
    after = predictor.model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # BatchNorm statistics included


@pytest.mark.parametrize("degrade, view", [(True, "z"), (False, "x")])
def test_predict_sees_what_the_test_set_gives_the_model(experiment: Experiment, degrade: bool, view: str) -> None:
    trained = experiment.train_or_load("b")
    test_set = experiment.test_set
    expected, _ = predict(trained.model, trained.normalizer, test_set, view, trained.hardware)
    sources = [test_set._source(record) for record in test_set.records]
    predictions = experiment.predictor("b").predict(
        [image for image, _ in sources], boxes=[box for _, box in sources], degrade=degrade,
        seeds=[test_set.seed_of(index) for index in range(len(test_set))])
    torch.testing.assert_close(torch.from_numpy(predictions.logits), expected, rtol=1e-5, atol=1e-5)
    assert predictions.names == [experiment.data.classes[label] for label in expected.argmax(1)]
    assert predictions.probabilities.sum(axis=1) == pytest.approx(np.ones(len(test_set)), abs=1e-5)


def test_files_arrays_and_pil_images_are_the_same_image(experiment: Experiment, tmp_path: Path) -> None:
    predictor = experiment.predictor("b")
    pixels = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    from_array = predictor.predict([pixels]).logits
    assert np.array_equal(predictor.predict(tmp_path / "photo.png").logits, from_array)
    assert np.array_equal(predictor.predict(str(tmp_path / "photo.png")).logits, from_array)
    assert np.array_equal(predictor.predict(Image.fromarray(pixels)).logits, from_array)
    assert predictor.predict([pixels, pixels]).logits.shape == (2, len(experiment.data.classes))


def test_the_run_folder_gives_the_same_model(experiment: Experiment) -> None:
    in_memory = experiment.predictor("cqd")
    loaded = cqdkit.load_predictor(experiment.directory, "cqd")
    assert not loaded.model.training and loaded.classes == tuple(experiment.data.classes)
    images, boxes = zip(*(experiment.test_set._source(record) for record in experiment.test_set.records[:3]))
    for degrade in (False, True):
        torch.testing.assert_close(torch.from_numpy(loaded.predict(images, boxes=boxes, degrade=degrade).logits),
                                   torch.from_numpy(in_memory.predict(images, boxes=boxes, degrade=degrade).logits))
    with pytest.raises(DataError, match="image 0 .*needs an object box"):  # this run's views are box crops
        loaded.predict(images[0], degrade=True)


def test_bad_input_is_one_clear_error(experiment: Experiment, tmp_path: Path) -> None:
    predictor = experiment.predictor("b")
    pixels = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(CqdkitError, match="1 boxes for 2 images"):
        predictor.predict([pixels, pixels], boxes=[None])
    with pytest.raises(DataError, match="cannot predict on a dict"):
        predictor.predict([{"not": "an image"}])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        predictor.predict(tmp_path / "broken.png")
