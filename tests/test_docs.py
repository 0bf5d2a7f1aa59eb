"""The guide in docs/ must run: every ```python block of a chapter is executed, in order.

Each chapter runs in one fresh namespace, in a temporary working directory holding a read-only
link ``weights -> <repo>/weights`` (the guide is written to be run from the repository root).
A fenced ```output block right after a python block must appear verbatim in what that block
printed, so the outputs shown in the guide cannot go stale either.  A chapter containing
``<!-- test: slow -->`` is marked slow; one containing ``<!-- test: needs-shipped-model -->`` is
skipped when ``weights/mnist_cnn.npz`` is missing.

Also here: the links and pictures of the guide exist, and ``npcnn.digits.analysis`` (which draws the
pictures of chapter 5) works on a tiny model and on the shipped one.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npcnn
from npcnn.digits import analysis as inspect
from npcnn.digits.errors import DataError
from npcnn.errors import NpcnnError
from npcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PICTURE_BYTES = 300 * 1024

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, first line of the code)`` for every fenced block, in order."""
    return [
        (match.group(1), match.group(2), text.count("\n", 0, match.start(2)) + 1)
        for match in FENCE.finditer(text)
    ]


def chapters() -> list[Path]:
    return sorted(DOCS.glob("[0-9]*.md"))


def chapter_params() -> list:
    params = []
    for path in chapters():
        text = path.read_text()
        marks = [pytest.mark.slow] if "<!-- test: slow -->" in text else []
        if "<!-- test: needs-shipped-model -->" in text:
            marks.append(
                pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no weights/mnist_cnn.npz")
            )
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_the_guide_has_its_chapters():
    names = [path.name for path in chapters()]
    assert len(names) >= 5, names
    assert (DOCS / "README.md").exists()
    for path in chapters():
        languages = [language for language, _, _ in fenced_blocks(path.read_text())]
        assert "python" in languages, f"{path.name} has no python code to run"


def test_fenced_blocks_are_found_with_their_line_numbers():
    text = "intro\n```python\nx = 1\n```\n\n```output\n1\n```\n"
    assert fenced_blocks(text) == [("python", "x = 1\n", 3), ("output", "1\n", 7)]


def run_markdown(text: str, filename: str) -> dict:
    """Execute the python blocks of ``text`` in order in one namespace; check its output blocks.

    Returns the namespace.  A failing block's traceback names its line in ``filename``.
    """
    namespace: dict = {"__name__": "docs_" + re.sub(r"\W", "_", Path(filename).stem)}
    printed, previous = "", None
    for language, code, line in fenced_blocks(text):
        if language == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                # Pad with blank lines so that a traceback names the line in the Markdown file.
                exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)
            printed = buffer.getvalue()
            sys.stdout.write(printed)  # still visible with pytest -s, or when a test fails
        elif language == "output":
            assert previous == "python", f"{filename}:{line}: an output block needs code before it"
            assert _normalise(code) in _normalise(printed), (
                f"{filename}:{line}: the output shown in the guide is not what the code "
                f"printed.\n--- shown ---\n{code}\n--- printed ---\n{printed}"
            )
        previous = language
    return namespace


def test_run_markdown_catches_stale_output_and_names_the_line():
    good = "Text.\n\n```python\nprint(6 * 7)\n```\n\n```output\n42\n```\n"
    assert run_markdown(good, "good.md")["__name__"] == "docs_good"
    with pytest.raises(AssertionError, match="not what the code printed"):
        run_markdown(good.replace("42", "43"), "stale.md")
    broken = "Text.\n\n```python\nx = 1\ny = x / 0\n```\n"
    with pytest.raises(ZeroDivisionError) as error:
        run_markdown(broken, "broken.md")
    assert error.traceback[-1].lineno + 1 == 5  # line 5 of broken.md (pytest counts from 0)


@pytest.mark.parametrize("chapter", chapter_params())
def test_chapter_code_runs(chapter: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    (tmp_path / "weights").symlink_to(ROOT / "weights", target_is_directory=True)
    run_markdown(chapter.read_text(), str(chapter))


def test_links_and_pictures_of_the_guide_exist():
    referenced = set()
    for path in [DOCS / "README.md", *chapters()]:
        for target in LINK.findall(path.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.exists(), f"{path.name} links to a missing {target}"
            referenced.add(resolved)
    pictures = sorted((DOCS / "images").glob("*.png"))
    assert pictures, "docs/images holds no pictures"
    for picture in pictures:
        data = picture.read_bytes()
        assert data.startswith(PNG_MAGIC), picture.name
        assert len(data) < MAX_PICTURE_BYTES, f"{picture.name} is {len(data) // 1024} KB"
        assert picture.resolve() in referenced, f"no page of the guide shows {picture.name}"


# --------------------------------------------------------------------------- npcnn.digits.analysis
def tiny_model() -> npcnn.Sequential:
    return npcnn.Sequential(
        [Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 13 * 13, 10)], seed=0
    )


def fake_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random blobs standing in for digits, with every class among the labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((count, 28, 28)).astype(np.float32) ** 4
    return x, np.arange(count) % 10


def assert_pictures(folder: Path, names: list[str]) -> None:
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert len(data) < MAX_PICTURE_BYTES, f"{name} is {len(data) // 1024} KB"


def test_inspect_draws_every_picture_of_a_tiny_model(tmp_path):
    x, y = fake_digits(40)
    history = [
        {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.95},
        {"epoch": 2, "loss": 0.3, "accuracy": 0.95, "val_loss": 0.1, "val_accuracy": 0.97},
    ]
    written = inspect.inspect_model(tiny_model(), x, y, tmp_path / "pictures", history=history)
    names = [*inspect.PICTURES, inspect.CURVES]
    assert sorted(p.name for p in written) == sorted(names)
    assert_pictures(tmp_path / "pictures", names)


def test_inspect_numbers():
    model = tiny_model()
    x, y = fake_digits(12)
    layers, maps = inspect.feature_maps(model, x[0])
    assert layers == "conv2d → relu"  # the maps are taken after the ReLU: never negative
    assert maps.shape == (4, 26, 26) and maps.min() >= 0
    predicted, grad = inspect.saliency_map(model, x[3])
    assert predicted == int(model.predict(x[3][None, None]).argmax())
    np.testing.assert_allclose(grad, model.input_gradient(x[3][None, None], predicted)[0, 0])
    cm = inspect.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], classes=3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    assert inspect.first_of_each_class(np.array([3, 1, 3, 0, 1])) == [3, 1, 0]


def test_inspect_refuses_what_it_cannot_show(tmp_path):
    dense_only = npcnn.Sequential([Flatten(), Dense(784, 10)])
    with pytest.raises(NpcnnError, match="no Conv2D"):
        inspect.plot_filters(dense_only, tmp_path / "f.png")
    with pytest.raises(NpcnnError, match="shaped"):
        inspect.as_image_batch(np.zeros((2, 3, 28, 28)))
    x, y = fake_digits(5)
    with pytest.raises(NpcnnError, match="labels"):
        inspect.inspect_model(tiny_model(), x, y[:3], tmp_path)
    with pytest.raises(NpcnnError, match="digit index"):
        inspect.inspect_model(tiny_model(), x, y, tmp_path, digit_index=5)


@pytest.mark.slow  # reads real MNIST (fetching it first if it is not cached)
def test_inspect_command_on_a_tiny_saved_model(tmp_path, capsys):
    weights = tmp_path / "tiny.npz"
    tiny_model().save(weights)
    history = [{"epoch": 1, "loss": 2.0, "accuracy": 0.3, "val_loss": 1.9, "val_accuracy": 0.4}]
    (tmp_path / "MODEL_CARD.json").write_text(json.dumps({"file": "tiny.npz", "history": history}))
    try:
        from npcnn.digits.data import load_mnist

        load_mnist()
    except DataError as error:
        pytest.skip(f"MNIST is not available: {error}")
    out = tmp_path / "pictures"
    code = inspect.main(["--weights", str(weights), "--out", str(out), "--limit", "300"])
    assert code == 0
    assert_pictures(out, [*inspect.PICTURES, inspect.CURVES])
    assert capsys.readouterr().out.count("wrote ") == len(inspect.PICTURES) + 1


def test_inspect_command_says_what_is_wrong(tmp_path, capsys):
    assert inspect.main(["--weights", str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2
    assert "model file not found" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    assert inspect.main(["--weights", str(tmp_path / "bad.npz"), "--out", str(tmp_path)]) == 2
    assert "npcnn.digits.analysis:" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_inspect_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "npcnn.digits.analysis", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--weights" in result.stdout and "--out" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no weights/mnist_cnn.npz")
def test_inspect_on_the_shipped_model(tmp_path):
    model = npcnn.load(SHIPPED_WEIGHTS)
    try:
        from npcnn.digits.data import load_mnist

        _, (x_test, y_test) = load_mnist()
    except DataError as error:
        pytest.skip(f"MNIST is not available: {error}")
    out = tmp_path / "pictures"
    assert inspect.main(["--weights", str(SHIPPED_WEIGHTS), "--out", str(out)]) == 0
    assert_pictures(out, list(inspect.PICTURES))
    # The confusion matrix inspect draws agrees with the accuracy measured by train_model.py.
    y_pred = model.predict(inspect.as_image_batch(x_test)).argmax(axis=1)
    cm = inspect.confusion_matrix(y_test, y_pred)
    assert cm.sum() == 10_000
    accuracy = np.trace(cm) / cm.sum()
    assert accuracy == pytest.approx(model.metadata["metrics"]["test_accuracy"], abs=2e-4)
    assert accuracy > 0.99
