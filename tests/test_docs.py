"""The docs say what the code has: every magic, every `%%sagemaker_train` flag (no more), every
config field (docs/config.md is generated from TrainConfig), and every link leads somewhere."""

import difflib
import importlib.util
import re
from pathlib import Path

import pytest

from sm_magic.config.model import TrainConfig
from sm_magic.magic.magics import SageMakerMagics
from sm_magic.plan import train_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
GENERATOR = ROOT / "scripts" / "config_reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("config_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_what_the_generator_writes():
    expected = _generator().render()
    path = DOCS / "config.md"
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True),
                                                 "docs/config.md", "generated", n=1))[:40])
        pytest.fail(f"docs/config.md is not what TrainConfig's fields say: run python scripts/config_reference.py\n{diff}")


def test_every_config_field_is_in_the_reference():
    reference = (DOCS / "config.md").read_text(encoding="utf-8")
    for name, field in TrainConfig.model_fields.items():
        if not field.exclude:
            assert f"| `{name}`<br>" in reference, f"config field {name} is missing from docs/config.md"


def _flag_table() -> list[str]:
    """The first cell of each row of the README's `%%sagemaker_train` flag table."""
    lines = README.splitlines()
    start = lines.index("| flag | meaning |") + 2
    cells = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells.append(re.split(r"(?<!\\)\|", line)[1])
    return cells


def test_the_readme_flag_table_is_the_parser():
    cells = _flag_table()
    documented = {flag for cell in cells for flag in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", cell)}
    parser = train_line.parser()
    flags = {f for action in parser._actions for f in action.option_strings} - {"-h", "--help"}
    assert not flags - documented, f"%%sagemaker_train flags missing from README's flag table: {sorted(flags - documented)}"
    assert not documented - flags, f"README's flag table has flags the parser lacks: {sorted(documented - flags)}"
    for action in parser._actions:
        if action.choices:
            shown = "{" + ",".join(action.choices) + "}"
            assert any(f"{action.option_strings[-1]} {shown}" in cell for cell in cells), \
                f"README's flag table should show {action.option_strings[-1]} {shown}"


def test_every_magic_is_documented():
    magics = (DOCS / "magics.md").read_text(encoding="utf-8")
    for name in (*SageMakerMagics.magics["line"], *SageMakerMagics.magics["cell"]):
        prefix = "%%" if name in SageMakerMagics.magics["cell"] else "%"
        assert f"`{prefix}{name}" in magics, f"{prefix}{name} is missing from docs/magics.md"
        assert f"{prefix}{name}" in README, f"{prefix}{name} is missing from README"


def test_the_readme_starts_with_the_install():
    first = next(i for i, line in enumerate(README.splitlines(), start=1) if "pip install" in line)
    assert first <= 25, f"README's first `pip install` is on line {first}: the install goes near the top"


def test_every_docs_page_is_linked_from_the_readme():
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in README, f"README links no docs/{page.name}"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(path.read_text(encoding="utf-8")) if line.startswith("#")}


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))])
def test_links_lead_somewhere(page):
    source = ROOT / page
    for line in _prose(source.read_text(encoding="utf-8")):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            path = (source.parent / file).resolve() if file else source
            assert path.exists(), f"{page}: the link {target} leads to no file"
            if anchor:
                assert anchor in _anchors(path), f"{page}: the link {target} leads to no heading of {path.name}"


def _python_blocks(text: str) -> list[str]:
    """The bodies of the ```python blocks of a Markdown text."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_readme_quickstart_cell_is_the_notebooks_without_wait():
    """The README's quickstart shows the notebook's whole training cell, launched without --wait
    (the kernel stays free); the notebook keeps --wait for `make demo`'s headless run."""
    import nbformat

    nb = nbformat.read(ROOT / "example_notebooks" / "quickstart.ipynb", as_version=4)
    [cell] = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%sagemaker_train")]
    line, body = cell.split("\n", 1)
    assert line.startswith("%%sagemaker_train --wait "), "make demo runs the quickstart headless: its cell keeps --wait"
    quickstart = README[README.index("## Quickstart"):]
    blocks = _python_blocks(quickstart)
    assert blocks[0].strip() == "%load_ext sm_magic"
    shown = blocks[1].rstrip("\n")
    assert "..." not in shown
    assert shown == line.replace(" --wait", "", 1) + "\n" + body.rstrip("\n"), \
        "README's quickstart cell is not the notebook's training cell (without --wait): copy it over"
