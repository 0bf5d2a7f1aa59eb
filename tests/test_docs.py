"""The guide in docs/ must run: every ```python block of a chapter (and of the README) is
executed, in order.

Each chapter runs in one fresh namespace, in a temporary working directory holding a read-only
link ``weights -> <repo>/weights`` (the guide is written to be run from the repository root).
A fenced ```output block right after a python block must appear verbatim in what that block
printed, so the outputs shown in the guide cannot go stale either.  A chapter containing
``<!-- test: slow -->`` is marked slow; one containing ``<!-- test: needs-shipped-model -->`` is
skipped when ``weights/mnist_cnn.npz`` is missing.

Also here: the links and pictures of the guide exist.  ``npcnn.digits.analysis``, which draws the
pictures of chapter 5, has its own tests in tests/digits/test_analysis.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

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
    """The guide's chapters, and the README (its "Use the library" code runs too)."""
    params = []
    for path in [*chapters(), ROOT / "README.md"]:
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
