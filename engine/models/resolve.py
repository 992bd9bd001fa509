"""Model resolution: the one place where a job's model choices become concrete models.

A job's options name models by choice (``swapper``, ``detector``, ``enhancer``, with
``auto`` among them). ``resolve`` turns those choices into the concrete models of
``ResolvedModels``; every caller goes through it (``FaceEngine.resolve`` at the worker,
``resolve_models`` / ``resolve_for_spec`` at submit), so the rules live once:

- ``detector``: ``auto`` is the first installed of ``DETECTOR_PREFERENCE``, else the
  built-in ``mtcnn``; ``scrfd`` is the first installed of the same list, or an error.
- ``swapper``: ``auto`` is ``inswapper_128`` when it and the recognizer are installed,
  else the built-in ``classic``.
- ``inswapper_128`` and the ``reference`` selector need the recognizer.
- ``enhancer``: as named (``none``: no model).

At submit, the result is written into the job spec as ``ModelRef`` s (role, name and
the catalogue's SHA-256, ``""`` for a built-in model without a file), and the worker
runs exactly those models (``resolved_from_refs``): it never resolves ``auto`` again,
never substitutes another model, and fails with ``ModelUnavailable`` if one is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ModelUnavailable
from engine.models.registry import REGISTRY, ModelSpec
from engine.options import ParsedOptions, SwapOptions

if TYPE_CHECKING:
    from engine.models.manager import ModelManager

DETECTOR_PREFERENCE = ("det_10g", "scrfd_2.5g")
RECOGNIZER = "arcface_w600k_r50"
SWAPPER_MODEL = "inswapper_128"
BUILTIN_DETECTOR = "mtcnn"
BUILTIN_SWAPPER = "classic"
ROLES = ("detector", "swapper", "recognizer", "enhancer")


@dataclass(frozen=True)
class ModelRef:
    """One model a job runs with: its ``role``, registry ``name`` and pinned ``sha256``
    (the catalogue's; ``""`` for a built-in model that has no file, such as ``classic``
    or ``mtcnn``)."""

    role: str
    name: str
    sha256: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "name": self.name, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRef:
        return cls(str(data["role"]), str(data["name"]), str(data.get("sha256") or ""))


@dataclass(frozen=True)
class ResolvedModels:
    """The concrete models a job runs with, after ``auto`` has been resolved."""

    detector: str
    swapper: str
    enhancer: str
    recognizer: str | None


def needs_recognizer(options: SwapOptions, swapper: str) -> bool:
    """Whether the job embeds faces: for ``inswapper_128``'s source identity, or to find
    the reference face."""
    return swapper == SWAPPER_MODEL or options.selector == "reference"


def resolve(
    options: SwapOptions, installed: ModelManager | None, *, verify: bool = True
) -> ResolvedModels:
    """Turn ``auto`` choices into the best installed models, or explain what is missing.

    ``installed``: the models directory to resolve against. ``None`` means there is
    none at hand (the scheduler of remote Celery workers, which own the models): then
    ``auto`` resolves against the catalogue alone, to the preferred model (the first of
    ``DETECTOR_PREFERENCE``, ``inswapper_128`` with its recognizer), so a worker that
    lacks it fails the job with ``ModelUnavailable`` rather than quietly running a
    weaker model. ``verify``: named models are checked with ``require`` (hashed once,
    then trusted through the manager's sidecar) rather than only by size.
    """
    if installed is None:
        return _resolve_from_catalogue(options)

    def check(name: str) -> None:
        if verify:
            installed.require(name)
        else:
            installed.check_present(name)

    recognizer = RECOGNIZER if installed.is_installed(RECOGNIZER) else None
    if options.detector == "auto":
        detector = installed.best("detector", list(DETECTOR_PREFERENCE)) or BUILTIN_DETECTOR
    elif options.detector == "scrfd":
        detector = installed.best("detector", list(DETECTOR_PREFERENCE)) or ""
        if not detector:
            raise ModelUnavailable(
                "the scrfd detector needs det_10g or scrfd_2.5g; "
                "run: python app.py models download scrfd_2.5g"
            )
    else:
        detector = options.detector
    if options.swapper == "auto":
        usable = installed.is_installed(SWAPPER_MODEL) and recognizer is not None
        swapper = SWAPPER_MODEL if usable else BUILTIN_SWAPPER
    else:
        swapper = options.swapper
    if swapper == SWAPPER_MODEL:
        check(SWAPPER_MODEL)
        if recognizer is None:
            raise ModelUnavailable(
                f"inswapper_128 needs the {RECOGNIZER} recognizer for the source identity; "
                f"run: python app.py models download {RECOGNIZER}"
            )
    if options.selector == "reference" and recognizer is None:
        raise ModelUnavailable(
            f"the 'reference' face selector compares faces with the {RECOGNIZER} "
            f"recognizer, which is not installed; run: python app.py models download {RECOGNIZER}"
        )
    if options.enhancer != "none":
        check(options.enhancer)
    return ResolvedModels(detector, swapper, options.enhancer, recognizer)


def _resolve_from_catalogue(options: SwapOptions) -> ResolvedModels:
    detector = options.detector
    if detector in ("auto", "scrfd"):
        detector = DETECTOR_PREFERENCE[0]
    swapper = SWAPPER_MODEL if options.swapper == "auto" else options.swapper
    recognizer = RECOGNIZER if needs_recognizer(options, swapper) else None
    return ResolvedModels(detector, swapper, options.enhancer, recognizer)


def model_refs(
    resolved: ResolvedModels,
    options: SwapOptions,
    catalogue: Mapping[str, ModelSpec] = REGISTRY,
) -> tuple[ModelRef, ...]:
    """The job spec's record of ``resolved``: one ``ModelRef`` per model the job uses,
    each with the catalogue's checksum. The recognizer is named only where the job
    needs it (so a worker is never asked for a model the job does not use)."""
    named = [("detector", resolved.detector), ("swapper", resolved.swapper)]
    if resolved.recognizer and needs_recognizer(options, resolved.swapper):
        named.append(("recognizer", resolved.recognizer))
    if resolved.enhancer != "none":
        named.append(("enhancer", resolved.enhancer))
    return tuple(_ref(role, name, catalogue) for role, name in named)


def _ref(role: str, name: str, catalogue: Mapping[str, ModelSpec]) -> ModelRef:
    spec = catalogue.get(name)
    if spec is None:
        known = ", ".join(sorted(catalogue))
        raise ModelUnavailable(f"unknown model '{name}'; known models: {known}")
    return ModelRef(role, name, "" if spec.embedded else spec.sha256)


def resolve_models(options: SwapOptions, installed: ModelManager | None) -> tuple[ModelRef, ...]:
    """The models a job submitted with ``options`` will run with, for its spec.

    Cheap enough for a submit: models are checked by size (``check_present``), never
    hashed. With ``installed`` None, ``auto`` is the catalogue's preferred model (see
    ``resolve``). Checksums come from ``installed``'s catalogue (the registry), never
    from the files.
    """
    catalogue = installed.registry if installed is not None else REGISTRY
    return model_refs(resolve(options, installed, verify=False), options, catalogue)


def resolve_for_spec(
    options: ParsedOptions | SwapOptions, models_dir: str | Path | None
) -> tuple[ModelRef, ...]:
    """``resolve_models`` for a submit that knows only the workers' models directory.

    ``models_dir`` None (remote workers own the models): ``auto`` resolves to the
    catalogue's preferred model, and a worker without it fails the job clearly.
    """
    from engine.models.manager import ModelManager

    swap = options.swap if isinstance(options, ParsedOptions) else options
    installed = ModelManager(models_dir) if models_dir else None
    return resolve_models(swap, installed)


def resolved_from_refs(
    refs: Iterable[ModelRef], options: SwapOptions, installed: ModelManager
) -> ResolvedModels:
    """The worker's side: the models a job spec names, each checked to be installed
    with the checksum the spec recorded, or ``ModelUnavailable`` naming it and the
    command that installs it. Nothing is resolved again and nothing is substituted."""
    by_role: dict[str, ModelRef] = {}
    for ref in refs:
        if ref.role not in ROLES or ref.role in by_role:
            raise ModelUnavailable(
                f"the job spec names a model for role {ref.role!r} it cannot use"
            )
        by_role[ref.role] = ref
    for role in ("detector", "swapper"):
        if role not in by_role:
            raise ModelUnavailable(f"the job spec names no {role} model")
    swapper = by_role["swapper"].name
    if needs_recognizer(options, swapper) and "recognizer" not in by_role:
        raise ModelUnavailable(f"the job spec names no recognizer, which {swapper} needs")
    for ref in by_role.values():
        _check_ref(ref, installed)
    recognizer = by_role.get("recognizer")
    enhancer = by_role.get("enhancer")
    return ResolvedModels(
        detector=by_role["detector"].name,
        swapper=swapper,
        enhancer=enhancer.name if enhancer else "none",
        recognizer=recognizer.name if recognizer else None,
    )


def _check_ref(ref: ModelRef, installed: ModelManager) -> None:
    spec = installed.registry.get(ref.name)
    if spec is None:
        raise ModelUnavailable(
            f"this job runs the {ref.role} model {ref.name}, which this worker does not "
            "know; run it on a worker of the version that accepted it"
        )
    if spec.embedded:
        if ref.sha256:
            raise ModelUnavailable(
                f"this job runs the {ref.role} model {ref.name} with sha256 {ref.sha256}, "
                "but on this worker it is a built-in model without a file"
            )
        try:
            installed.check_present(ref.name)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                f"this job runs the {ref.role} model {ref.name}: {exc.message}"
            ) from None
        return
    if ref.sha256 != spec.sha256:
        raise ModelUnavailable(
            f"this job runs the {ref.role} model {ref.name} with sha256 {ref.sha256}, but "
            f"this worker pins sha256 {spec.sha256} for it and will not run another file; "
            "run the job on a worker with the matching model"
        )
    try:
        installed.require(ref.name)  # verified once, then trusted through the sidecar
    except ModelUnavailable as exc:
        raise ModelUnavailable(
            f"this job runs the {ref.role} model {ref.name}, chosen when it was submitted, "
            f"and no other: {exc.message}"
        ) from None
