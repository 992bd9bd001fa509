"""The README's commands are the ones CI and a newcomer actually run."""

import re

from tests.assets import REPO


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    blocks = _bash_blocks((REPO / "README.md").read_text())
    test_command = next(block for block in blocks if "pytest" in block)
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_studio_command_installs_then_serves():
    blocks = _bash_blocks((REPO / "README.md").read_text())
    serve = next(block for block in blocks if block.endswith("python app.py"))
    assert "pip install -r requirements.txt" in serve
    assert "--no-deps -r requirements-nodeps.txt" in serve
