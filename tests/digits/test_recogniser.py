"""``npcnn.digits.recogniser``: picture -> reading, numbers, explanations (the app's library).

The HTTP side (status codes, every way of sending a picture, hostile input) is in tests/app.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

import npcnn
from npcnn.digits import analysis
from npcnn.digits.errors import ImageError, NoInkError
from npcnn.digits.preprocess import to_mnist
from npcnn.digits.recogniser import (
    MAX_DIGITS,
    Recogniser,
    TooManyMarksError,
    decode_base64_image,
    open_picture,
    png_data_url,
)
from npcnn.errors import NpcnnError
from npcnn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU

MNIST = (1, 28, 28)


def tiny_model() -> npcnn.Sequential:
    layers = [
        Conv2D(1, 4, 3),
        BatchNorm(4),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(4 * 13 * 13, 10),
    ]
    return npcnn.Sequential(layers, input_shape=MNIST, seed=2)


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return Recogniser(tiny_model())


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bars(count: int, width: int = 600) -> bytes:
    """``count`` upright bars, dark on white, side by side: a "number" of ones."""
    image = Image.new("L", (width, 200), 255)
    draw = ImageDraw.Draw(image)
    step = width / count
    for i in range(count):
        left = step * i + step / 3
        draw.rectangle((left, 30, left + max(2, step / 6), 170), fill=0)
    return png(image)


def decode_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


RUNS_THE_NETWORK = (
    "forward", "backward", "predict", "predict_logits", "activations", "input_gradient", "inspect"
)  # fmt: skip


def test_explain_runs_one_forward_and_one_backward_pass(monkeypatch) -> None:
    """One ``Sequential.inspect`` (one pass each way: tests/core/test_layer_protocol.py) and
    nothing else that runs the network, on either of the recogniser's models."""
    recogniser = Recogniser(tiny_model())
    image = to_mnist(open_picture(bars(1)))
    calls: list[str] = []
    for model in (recogniser.model, recogniser.explain_model):
        for name in RUNS_THE_NETWORK:
            method = getattr(model, name)
            monkeypatch.setattr(
                model, name, lambda *a, _m=method, _n=name, **k: calls.append(_n) or _m(*a, **k)
            )
    recogniser.explain(image)
    assert calls == ["inspect"]


def test_explain_agrees_with_classify_and_with_analysis(recogniser) -> None:
    image = to_mnist(open_picture(bars(1)))
    answer = recogniser.explain(image)
    reading = recogniser.classify([image])[0]
    for key in ("probabilities", "confidence", "low_confidence", "runner_up", "preview"):
        assert answer[key] == reading[key], key
    model = recogniser.model
    predicted, gradient = analysis.saliency_map(model, image)
    assert answer["digit"] == predicted == reading["digit"]
    np.testing.assert_allclose(
        answer["saliency_values"], analysis.saliency_strength(gradient), atol=1e-4
    )
    # the feature maps are the guide's: after the first convolution's BatchNorm and ReLU
    layers, maps = analysis.feature_maps(model, image)
    assert answer["feature_layer"] == "conv2d"
    assert answer["feature_layers"] == layers == "conv2d → batchnorm → relu"
    grid, rows, columns = analysis.feature_map_grid(maps)
    assert answer["feature_map_grid"] == [rows, columns]
    assert answer["feature_map_size"] == list(maps.shape[1:])
    np.testing.assert_array_equal(decode_png(answer["feature_maps"]), analysis.colourise(grid))


def test_a_model_without_convolutions_is_explained_without_feature_maps() -> None:
    dense = npcnn.Sequential([Flatten(), Dense(784, 10)], input_shape=MNIST)
    answer = Recogniser(dense).explain(np.zeros((28, 28), np.float32))
    assert answer["feature_maps"] is None and answer["feature_map_count"] == 0
    assert len(answer["saliency_values"]) == 28


def test_read_digit_and_read_number(recogniser) -> None:
    reading = recogniser.read_digit(bars(1))
    assert set(reading) >= {"digit", "confidence", "probabilities", "runner_up", "preview"}
    assert reading["is_digit"] is True and reading["not_digit_probability"] == 0.0
    assert reading["runner_up"] != reading["digit"]
    number = recogniser.read_number(bars(3))
    assert len(number["digits"]) == 3 and len(number["number"]) == 3
    assert number["image_size"] == [600, 200]
    lefts = [d["box"][0] for d in number["digits"]]
    assert lefts == sorted(lefts)


def test_png_data_url_round_trips() -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(decode_png(png_data_url(pixels)), pixels)


BAD_PICTURES = {
    "empty": b"",
    "not an image": b"hello" * 20,
    "blank": png(Image.new("L", (100, 100), 255)),
}


@pytest.mark.parametrize("name", sorted(BAD_PICTURES))
def test_bad_pictures_raise_library_errors(recogniser, name: str) -> None:
    for read in (recogniser.read_digit, recogniser.read_number, recogniser.explain_digit):
        with pytest.raises(ImageError) as error:
            read(BAD_PICTURES[name])
        assert isinstance(error.value, NpcnnError)
        assert isinstance(error.value, NoInkError) == (name == "blank")


def test_too_many_marks_for_a_number(recogniser) -> None:
    with pytest.raises(TooManyMarksError, match="too many"):
        recogniser.read_number(bars(MAX_DIGITS + 4, width=1600))


@pytest.mark.parametrize(
    "text",
    ["", "!!!", "AAAAA", "data:image/png,%89PNG", "data:image/png;base64", "data:x;base64,@@"],
)
def test_bad_base64_is_an_image_error(text: str) -> None:
    with pytest.raises(ImageError):
        decode_base64_image(text)


def test_base64_in_every_spelling() -> None:
    data = png(Image.new("L", (5, 5), 0))
    standard = base64.b64encode(data).decode()
    for text in (
        standard,
        "data:image/png;base64," + standard,
        base64.urlsafe_b64encode(data).decode(),
        standard.rstrip("="),
        "\n".join(standard[i : i + 20] for i in range(0, len(standard), 20)),
    ):
        assert decode_base64_image(text) == data


# --------------------------------------------------------------------- "not a digit" (class 10)
def biased_model(outputs: int, winner: int, runner_up: int = 4) -> npcnn.Sequential:
    """A tiny model with ``outputs`` classes whose last bias makes ``winner`` the most probable
    class and ``runner_up`` the second, whatever the picture."""
    model = npcnn.Sequential([Flatten(), Dense(784, outputs)], input_shape=MNIST, seed=5)
    dense = model.layers[-1]
    dense.params["W"][...] = 0.0
    dense.params["b"][...] = 0.0
    dense.params["b"][winner] = 6.0
    dense.params["b"][runner_up] = 3.0
    return model


def test_an_eleven_output_model_may_say_not_a_digit() -> None:
    image = to_mnist(open_picture(bars(1)))
    recogniser = Recogniser(biased_model(11, winner=10, runner_up=4))
    expected = recogniser.model.predict(image[None, None])[0]
    for answer in (recogniser.classify([image])[0], recogniser.explain(image)):
        assert answer["is_digit"] is False
        assert answer["digit"] == 4  # the closest digit, not class 10
        assert answer["confidence"] == pytest.approx(float(expected[4]), abs=1e-6)
        assert len(answer["probabilities"]) == 10
        np.testing.assert_allclose(answer["probabilities"], expected[:10], atol=1e-6)
        assert answer["not_digit_probability"] == pytest.approx(float(expected[10]), abs=1e-6)
        assert answer["runner_up"] != 4 and 0 <= answer["runner_up"] <= 9
        assert answer["low_confidence"] is True  # a separate signal: 4 is far from sure
    assert recogniser.read_for_correction(bars(1))["predicted"] == "none"
    number = recogniser.read_number(bars(2))
    assert number["number"] == "44"
    assert [d["is_digit"] for d in number["digits"]] == [False, False]
    batch = recogniser.read_digits([bars(1), bars(1)])
    assert [r["is_digit"] for r in batch] == [False, False]


def test_an_eleven_output_model_that_sees_a_digit() -> None:
    recogniser = Recogniser(biased_model(11, winner=7, runner_up=10))
    answer = recogniser.read_digit(bars(1))
    assert answer["is_digit"] is True and answer["digit"] == 7
    assert answer["not_digit_probability"] > 0.04  # class 10 came second
    assert answer["runner_up"] != 10 and answer["low_confidence"] is False
    assert recogniser.read_for_correction(bars(1))["predicted"] == 7


def test_a_ten_output_model_always_reads_a_digit() -> None:
    recogniser = Recogniser(biased_model(10, winner=3, runner_up=8))
    answer = recogniser.read_digit(bars(1))
    assert answer["is_digit"] is True and answer["not_digit_probability"] == 0.0
    assert (answer["digit"], answer["runner_up"]) == (3, 8)
    assert len(answer["probabilities"]) == 10
    assert abs(sum(answer["probabilities"]) - 1.0) < 1e-4


# Run in a fresh process: the test process's kernels may have been compiled by other tests.
WARM_UP_THEN_READ = """
import sys
import numba.core.dispatcher
from npcnn.digits.number_set import number_set
from npcnn.digits.recogniser import Recogniser

def compiled():
    found = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("npcnn"):
            for key, value in vars(module).items():
                if isinstance(value, numba.core.dispatcher.Dispatcher):
                    found |= {(name, key, str(signature)) for signature in value.signatures}
    return found

recogniser = Recogniser.from_file(sys.argv[1])
recogniser.warm_up()
before = compiled()
pictures = number_set("dev", 12, seed=3)
for picture, method in zip(pictures, ["auto", "windows", "segmentation"] * 4):
    recogniser.read_number(picture.png(), method)
recogniser.read_digit(pictures[0].png())
recogniser.explain_digit(pictures[0].png())
print(sorted(compiled() - before))
"""


@pytest.mark.skipif("numba" not in npcnn.kernels.available_backends(), reason="no Numba")
def test_after_the_warm_up_no_reading_compiles_a_kernel(tmp_path) -> None:
    """The warm-up compiles every kernel a request uses: on a fresh install a kernel compiled on
    a user's request took that request 20 s (Winograd's, for a number's 32 or more windows)."""
    import subprocess
    import sys
    from pathlib import Path

    weights = Path(__file__).resolve().parents[2] / "weights" / "mnist_cnn.npz"
    script = tmp_path / "warm_up_then_read.py"
    script.write_text(WARM_UP_THEN_READ)
    done = subprocess.run(
        [sys.executable, str(script), str(weights)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
