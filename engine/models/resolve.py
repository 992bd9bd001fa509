"""Model resolution: the one place where a job's model choices become concrete models.

A job's options name models by choice (``swapper``, ``detector``, ``enhancer``,
``landmarker``, ``occluder`` …, with ``auto`` among them). ``resolve`` turns those
choices into the concrete catalogue models of ``ResolvedModels``; every caller goes
through it (``FaceEngine.resolve`` at the worker, ``resolve_models`` /
``resolve_for_spec`` at submit), so the rules live once:

- ``swapper``: ``auto`` is the first installed of ``SWAPPER_PREFERENCE`` (HyperSwap,
  then inswapper, then the rest of the catalogue, custom entries last) whose own needs
  (recognizer, converter) are installed too; else the built-in ``classic``.
- ``detector``: ``auto`` is the first installed of ``DETECTOR_PREFERENCE``, else the
  built-in ``mtcnn``; ``scrfd`` the first installed SCRFD-family file; ``many`` every
  installed retinaface, scrfd and yolo_face detector (FaceFusion's set).
- ``landmarker``: ``auto`` is the first installed 68-point landmarker, or none;
  ``fan_68_5`` (the 5→68 estimate) is used whenever it is installed.
- ``occluder`` / ``parser`` (only with the ``occlusion`` / ``region`` masks): ``auto``
  is the first installed of the kind; ``many`` every installed occluder.
- the classifier is needed by ``face_ages`` / ``face_genders``; the recognizer by
  embedding swappers, the ``reference`` selector and an identity weight other than 0.5.

Whatever a model needs and is missing is a ``ModelUnavailable`` naming the model and
the command that installs it. At submit, the result is written into the job spec as
``ModelRef`` s (role, name and the SHA-256 of the file: the catalogue's pin, or the
verified file's where the catalogue pins only a CRC32; ``""`` for a built-in model
without a file), and the worker runs exactly those models (``resolved_from_refs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidOptions, ModelUnavailable
from engine.families.table import MAX_PIXEL_BOOST, SWAPPER_FAMILIES
from engine.models.registry import DEFAULT_RECOGNIZER, REGISTRY, ModelSpec
from engine.options import ParsedOptions, SwapOptions, shown

if TYPE_CHECKING:
    from engine.models.manager import ModelManager

RECOGNIZER = DEFAULT_RECOGNIZER
SWAPPER_PREFERENCE = (
    "hyperswap_1a_256",
    "hyperswap_1b_256",
    "hyperswap_1c_256",
    "inswapper_128",
    "inswapper_128_fp16",
    "ghost_1_256",
    "ghost_2_256",
    "ghost_3_256",
    "simswap_256",
    "simswap_unofficial_512",
    "hififace_unofficial_256",
    "blendswap_256",
    "uniface_256",
)
DETECTOR_PREFERENCE = (
    "det_10g",
    "scrfd_2.5g",
    "retinaface_10g",
    "yoloface_8n",
    "yunet_2023_mar",
)
MANY_DETECTOR_FAMILIES = ("retinaface", "scrfd", "yolo_face")
LANDMARKER_PREFERENCE = ("2dfan4", "peppa_wutz")
LANDMARK_REGRESSOR = "fan_68_5"
OCCLUDER_PREFERENCE = ("xseg_1", "xseg_2", "xseg_3", "dfl_xseg")
PARSER_PREFERENCE = ("bisenet_resnet_34", "bisenet_resnet_18")
CLASSIFIER = "fairface"
BUILTIN_DETECTOR = "mtcnn"
BUILTIN_SWAPPER = "classic"
SWAPPER_MODEL = "inswapper_128"  # the swapper a remote ``auto`` resolved to before HyperSwap

FIXED_CHOICES = {
    "swapper": ("auto",),
    "detector": ("auto", "scrfd", "many"),
    "enhancer": ("none",),
    "frame_enhancer": ("none",),
    "occluder": ("auto", "many"),
    "parser": ("auto",),
    "landmarker": ("auto", "none"),
}

SINGLE_ROLES = (
    "swapper",
    "recognizer",
    "converter",
    "frame_enhancer",
    "landmarker",
    "landmark_regressor",
    "parser",
    "classifier",
)
MULTI_ROLES = ("detector", "enhancer", "occluder")
ROLES = (*SINGLE_ROLES, *MULTI_ROLES)


@dataclass(frozen=True)
class ModelRef:
    """One model a job runs with: its ``role``, catalogue ``name`` and pinned ``sha256``
    (``""`` for a built-in model that has no file, such as ``classic`` or ``mtcnn``)."""

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
    """The concrete models a job runs with, after ``auto`` has been resolved.

    ``detector`` is the one detector's name (``many``: ``detectors`` holds them all).
    ``enhancer`` is the chain, in order. Optional roles are None when unused."""

    detector: str
    swapper: str
    enhancer: tuple[str, ...]
    recognizer: str | None
    converter: str | None = None
    frame_enhancer: str | None = None
    detectors: tuple[str, ...] = ()
    landmarker: str | None = None
    landmark_regressor: str | None = None
    occluders: tuple[str, ...] = ()
    parser: str | None = None
    classifier: str | None = None

    @property
    def all_detectors(self) -> tuple[str, ...]:
        return self.detectors or (self.detector,)


def _spec_of(name: str, catalogue: Mapping[str, ModelSpec]) -> ModelSpec | None:
    return catalogue.get(name)


def swapper_needs_embedding(spec: ModelSpec | None) -> bool:
    family = SWAPPER_FAMILIES.get(spec.family) if spec is not None else None
    return family is not None and family.needs_embedding


def needs_recognizer(options: SwapOptions, swapper: str, catalogue=REGISTRY) -> bool:
    """Whether the job embeds faces: an embedding swapper's source identity, the
    reference face, or an identity weight that mixes in the target's identity."""
    spec = catalogue.get(swapper)
    embedding = swapper_needs_embedding(spec)
    by_reference = any(entry.kind == "reference" for entry in options.face_map)
    return embedding or options.selector == "reference" or by_reference


class _Resolver:
    """One resolution against a models directory (or, with none, the catalogue alone)."""

    def __init__(self, options: SwapOptions, installed: ModelManager | None, verify: bool):
        self.options = options
        self.installed = installed
        self.verify = verify
        self.catalogue: Mapping[str, ModelSpec] = (
            installed.registry if installed is not None else REGISTRY
        )

    # -- lookups ----------------------------------------------------------------------------

    def spec(self, name: str, kind: str, option: str) -> ModelSpec:
        """The catalogue entry ``option`` names; an unknown name is an error listing the
        choices, one the operator's licence filter hides says so."""
        if name not in self.catalogue:
            hidden = getattr(self.installed, "catalogue", {}) if self.installed else {}
            if name in hidden:
                self.installed.spec(name)  # raises: excluded by the licence filter
            choices = [*FIXED_CHOICES.get(option, ()), *self.names_of(kind)]
            raise InvalidOptions(f"{option} must be one of {', '.join(choices)}; got {shown(name)}")
        spec = self.catalogue[name]
        if spec.kind != kind:
            raise InvalidOptions(
                f"{option} names {name}, which is a {spec.kind} model, not a {kind}"
            )
        return spec

    def is_installed(self, name: str) -> bool:
        if self.installed is None:
            return False
        try:
            return self.installed.is_installed(name)
        except ModelUnavailable:
            return False

    def check(self, name: str) -> None:
        """The model is installed (hashed with ``verify``), or a clear error."""
        if self.installed is None:
            return
        if self.verify:
            self.installed.require(name)
        else:
            self.installed.check_present(name)

    def names_of(self, kind: str, preference: Sequence[str] = ()) -> list[str]:
        """Every ``kind`` model of the catalogue: the preferred first, custom entries last."""
        names = [n for n in preference if n in self.catalogue and self.catalogue[n].kind == kind]
        rest = [n for n, s in self.catalogue.items() if s.kind == kind and n not in names]
        rest.sort(key=lambda n: self.catalogue[n].custom)
        return names + rest

    def first_installed(self, kind: str, preference: Sequence[str]) -> str | None:
        for name in self.names_of(kind, preference):
            if not self.catalogue[name].embedded and self.is_installed(name):
                return name
        return None

    def usable(self, name: str) -> bool:
        """Installed with everything it needs (for ``auto``)."""
        spec = self.catalogue[name]
        needs = [n for n in (spec.converter, self._recognizer_of(spec)) if n]
        return self.is_installed(name) and all(self.is_installed(n) for n in needs)

    def _recognizer_of(self, spec: ModelSpec) -> str:
        if not swapper_needs_embedding(spec):
            return ""
        return spec.recognizer or RECOGNIZER

    # -- roles --------------------------------------------------------------------------------

    def swapper(self) -> str:
        choice = self.options.swapper
        if choice == "auto":
            if self.installed is None:
                return SWAPPER_PREFERENCE[0]
            for name in self.names_of("swapper", SWAPPER_PREFERENCE):
                if not self.catalogue[name].embedded and self.usable(name):
                    return name
            return BUILTIN_SWAPPER
        spec = self.spec(choice, "swapper", "swapper")
        if not spec.embedded:
            self.check(choice)
        return choice

    def detectors(self) -> tuple[str, tuple[str, ...]]:
        choice = self.options.detector
        if choice == "auto":
            if self.installed is None:
                return DETECTOR_PREFERENCE[0], ()
            return self.first_installed("detector", DETECTOR_PREFERENCE) or BUILTIN_DETECTOR, ()
        if choice == "scrfd":
            scrfd = [n for n in self.names_of("detector", DETECTOR_PREFERENCE)
                     if self.catalogue[n].family == "scrfd"]  # fmt: skip
            if self.installed is None:
                return scrfd[0], ()
            found = next((n for n in scrfd if self.is_installed(n)), None)
            if found is None:
                raise ModelUnavailable(
                    "the scrfd detector needs det_10g or scrfd_2.5g; "
                    "run: python app.py models download scrfd_2.5g"
                )
            return found, ()
        if choice == "many":
            family_names = [
                n
                for n in self.names_of("detector", DETECTOR_PREFERENCE)
                if self.catalogue[n].family in MANY_DETECTOR_FAMILIES
            ]
            if self.installed is None:
                chosen = family_names
            else:
                chosen = [n for n in family_names if self.is_installed(n)]
            if not chosen:
                raise ModelUnavailable(
                    "detector 'many' combines the installed retinaface, scrfd and yolo_face "
                    "detectors, and none is installed; run: python app.py models download "
                    "retinaface_10g (or scrfd_2.5g, yoloface_8n)"
                )
            return chosen[0], tuple(chosen)
        spec = self.spec(choice, "detector", "detector")
        if not spec.embedded:
            self.check(choice)
        return choice, ()

    def recognizer(self, swapper: str) -> str | None:
        spec = self.catalogue.get(swapper)
        needed = needs_recognizer(self.options, swapper, self.catalogue)
        name = (spec.recognizer if spec is not None and spec.recognizer else "") or RECOGNIZER
        if self.installed is None:
            return name if needed else None
        if self.is_installed(name):
            if needed:
                self.check(name)
            return name
        if not needed:
            return None
        why = (
            f"{swapper} needs the {name} recognizer for the source identity"
            if swapper_needs_embedding(spec)
            else f"the 'reference' face selector and face_map's reference entries compare "
            f"faces with the {name} recognizer"
        )
        raise ModelUnavailable(
            f"{why}, which is not installed; run: python app.py models download {name}"
        )

    def converter(self, swapper: str) -> str | None:
        spec = self.catalogue.get(swapper)
        if spec is None or not spec.converter:
            family = SWAPPER_FAMILIES.get(spec.family) if spec is not None else None
            if family is not None and family.needs_converter:
                raise ModelUnavailable(
                    f"swapper {swapper} ({family.name}) needs a converter model and its "
                    "catalogue entry names none"
                )
            return None
        self.spec(spec.converter, "converter", f"{swapper}'s converter")
        if self.installed is not None and not self.is_installed(spec.converter):
            raise ModelUnavailable(
                f"{swapper} needs the {spec.converter} converter for its source identity, "
                f"which is not installed; run: python app.py models download {swapper} "
                "(which fetches what it needs)"
            )
        self.check(spec.converter)
        return spec.converter

    def enhancers(self) -> tuple[str, ...]:
        for name in self.options.enhancer:
            self.spec(name, "enhancer", "enhancer")
            self.check(name)
        return tuple(self.options.enhancer)

    def frame_enhancer(self) -> str | None:
        if self.options.frame_enhancer == "none":
            return None
        name = self.options.frame_enhancer
        self.spec(name, "frame_enhancer", "frame_enhancer")
        self.check(name)
        return name

    def landmarkers(self) -> tuple[str | None, str | None]:
        choice = self.options.landmarker
        regressor = None
        if choice != "none" and self.is_installed(LANDMARK_REGRESSOR):
            regressor = LANDMARK_REGRESSOR
        if choice == "none":
            landmarker = None
        elif choice == "auto":
            candidates = [
                n for n in self.names_of("landmarker", LANDMARKER_PREFERENCE)
                if self.catalogue[n].family != "fan_68_5"
            ]  # fmt: skip
            landmarker = next((n for n in candidates if self.is_installed(n)), None)
        else:
            spec = self.spec(choice, "landmarker", "landmarker")
            self.check(choice)
            if spec.family == "fan_68_5":
                landmarker, regressor = None, choice
            else:
                landmarker = choice
        if "area" in self.options.mask_types and landmarker is None and regressor is None:
            raise ModelUnavailable(
                "the 'area' mask needs 68 face landmarks: install a 68-point landmarker or "
                "the 5→68 regressor; run: python app.py models download 2dfan4 (or "
                "peppa_wutz, or fan_68_5)"
            )
        return landmarker, regressor

    def occluders(self) -> tuple[str, ...]:
        if "occlusion" not in self.options.mask_types:
            return ()
        choice = self.options.occluder
        names = self.names_of("occluder", OCCLUDER_PREFERENCE)
        if choice in ("auto", "many"):
            if self.installed is None:
                chosen = names[:1] if choice == "auto" else names
            else:
                installed = [n for n in names if self.is_installed(n)]
                chosen = installed[:1] if choice == "auto" else installed
            if not chosen:
                raise ModelUnavailable(
                    "the 'occlusion' mask needs an occluder model; run: python app.py models "
                    "download xseg_1 (or xseg_2, xseg_3, dfl_xseg)"
                )
            for name in chosen:
                self.check(name)
            return tuple(chosen)
        self.spec(choice, "occluder", "occluder")
        self.check(choice)
        return (choice,)

    def parser(self) -> str | None:
        if "region" not in self.options.mask_types:
            return None
        choice = self.options.parser
        if choice == "auto":
            if self.installed is None:
                return self.names_of("parser", PARSER_PREFERENCE)[0]
            found = self.first_installed("parser", PARSER_PREFERENCE)
            if found is None:
                raise ModelUnavailable(
                    "the 'region' mask needs a face parser; run: python app.py models download "
                    "bisenet_resnet_34 (or bisenet_resnet_18)"
                )
            self.check(found)
            return found
        self.spec(choice, "parser", "parser")
        self.check(choice)
        return choice

    def classifier(self) -> str | None:
        if self.options.face_ages is None and not self.options.face_genders:
            return None
        if self.installed is None:
            return CLASSIFIER
        found = self.first_installed("classifier", (CLASSIFIER,))
        if found is None:
            raise ModelUnavailable(
                "the face_ages and face_genders filters need the fairface classifier; "
                "run: python app.py models download fairface"
            )
        self.check(found)
        return found

    def check_detector_size(self, names: Sequence[str]) -> None:
        """``detector_size`` must be one every chosen detector's family offers."""
        size = self.options.detector_size
        if size is None:
            return
        from engine.detectors.build import DETECTOR_SIZES

        for name in names:
            spec = self.catalogue.get(name)
            family = spec.family if spec is not None else ""
            allowed = DETECTOR_SIZES.get("many" if len(names) > 1 else family)
            if allowed is not None and size not in allowed:
                offered = ", ".join(str(s) for s in allowed)
                raise InvalidOptions(
                    f"detector_size {size} is not offered by the {name} detector "
                    f"({'many' if len(names) > 1 else family}): choose one of {offered}"
                )

    def check_pixel_boost(self, swapper: str) -> None:
        """A pixel-boost size must be a whole multiple of the swapper's native size, up to
        1024: refused at submit, never discovered at the first face."""
        choice = self.options.pixel_boost
        if choice in ("auto", "native") or swapper == BUILTIN_SWAPPER:
            return
        native = self.native_size(swapper)
        size = int(choice)
        if native and (size % native or size < native or size > MAX_PIXEL_BOOST):
            sizes = ", ".join(str(native * k) for k in range(1, MAX_PIXEL_BOOST // native + 1))
            raise InvalidOptions(
                f"pixel_boost {size} is not available for {swapper} (native size {native}): "
                f"choose auto, native or one of {sizes}"
            )

    def native_size(self, swapper: str) -> int:
        from engine.cost import native_size

        if self.installed is not None:
            return native_size(self.installed, swapper)
        spec = self.catalogue.get(swapper)
        family = SWAPPER_FAMILIES.get(spec.family) if spec is not None else None
        if family is None:
            return 0
        return spec.input_size if isinstance(spec.input_size, int) else family.default_size

    def resolve(self) -> ResolvedModels:
        swapper = self.swapper()
        self.check_pixel_boost(swapper)
        detector, detectors = self.detectors()
        self.check_detector_size(detectors or (detector,))
        recognizer = self.recognizer(swapper)
        converter = self.converter(swapper)
        landmarker, regressor = self.landmarkers()
        return ResolvedModels(
            detector=detector,
            swapper=swapper,
            enhancer=self.enhancers(),
            recognizer=recognizer,
            converter=converter,
            frame_enhancer=self.frame_enhancer(),
            detectors=detectors,
            landmarker=landmarker,
            landmark_regressor=regressor,
            occluders=self.occluders(),
            parser=self.parser(),
            classifier=self.classifier(),
        )


def resolve(
    options: SwapOptions, installed: ModelManager | None, *, verify: bool = True
) -> ResolvedModels:
    """Turn ``auto`` choices into the best installed models, or explain what is missing.

    ``installed``: the models directory to resolve against. ``None`` means there is
    none at hand (the scheduler of remote Celery workers, which own the models): then
    ``auto`` resolves against the catalogue alone, to the preferred model, so a worker
    that lacks it fails the job with ``ModelUnavailable`` rather than quietly running a
    weaker model (optional helpers such as a landmarker resolve to none there).
    ``verify``: named models are checked with ``require`` (hashed once, then trusted
    through the manager's sidecar) rather than only by size.
    """
    return _Resolver(options, installed, verify).resolve()


def model_refs(
    resolved: ResolvedModels,
    options: SwapOptions,
    catalogue: Mapping[str, ModelSpec] = REGISTRY,
    installed: ModelManager | None = None,
) -> tuple[ModelRef, ...]:
    """The job spec's record of ``resolved``: one ``ModelRef`` per model the job uses,
    each with its checksum. The recognizer is named only where the job needs it (so a
    worker is never asked for a model the job does not use)."""
    named: list[tuple[str, str]] = [("detector", name) for name in resolved.all_detectors]
    named.append(("swapper", resolved.swapper))
    if resolved.recognizer and needs_recognizer(options, resolved.swapper, catalogue):
        named.append(("recognizer", resolved.recognizer))
    optional = (
        ("converter", resolved.converter),
        ("frame_enhancer", resolved.frame_enhancer),
        ("landmarker", resolved.landmarker),
        ("landmark_regressor", resolved.landmark_regressor),
        ("parser", resolved.parser),
        ("classifier", resolved.classifier),
    )
    named += [(role, name) for role, name in optional if name]
    named += [("enhancer", name) for name in resolved.enhancer]
    named += [("occluder", name) for name in resolved.occluders]
    return tuple(_ref(role, name, catalogue, installed) for role, name in named)


def _ref(
    role: str,
    name: str,
    catalogue: Mapping[str, ModelSpec],
    installed: ModelManager | None,
) -> ModelRef:
    spec = catalogue.get(name)
    if spec is None:
        known = ", ".join(sorted(catalogue))
        raise ModelUnavailable(f"unknown model '{name}'; known models: {known}")
    if spec.embedded:
        return ModelRef(role, name, "")
    sha256 = spec.sha256
    if not sha256 and installed is not None:
        sha256 = _file_sha256(installed, name)
    return ModelRef(role, name, sha256)


def _file_sha256(installed: ModelManager, name: str) -> str:
    """The verified file's SHA-256 (for models the catalogue pins only by CRC32)."""
    reader = getattr(installed, "file_sha256", None)
    return reader(name) if reader is not None else ""


def resolve_models(options: SwapOptions, installed: ModelManager | None) -> tuple[ModelRef, ...]:
    """The models a job submitted with ``options`` will run with, for its spec.

    Cheap enough for a submit: models are checked by size (``check_present``), never
    hashed. With ``installed`` None, ``auto`` is the catalogue's preferred model (see
    ``resolve``).
    """
    catalogue = installed.registry if installed is not None else REGISTRY
    resolved = resolve(options, installed, verify=False)
    return model_refs(resolved, options, catalogue, installed)


def resolve_for_spec(
    options: ParsedOptions | SwapOptions,
    models_dir: str | Path | None,
    licences: Iterable[str] | None = None,
) -> tuple[ModelRef, ...]:
    """``resolve_models`` for a submit that knows only the workers' models directory
    (and the operator's licence filter, if any)."""
    from engine.models.manager import ModelManager

    swap = options.swap if isinstance(options, ParsedOptions) else options
    installed = None
    if models_dir:
        installed = (
            ModelManager(models_dir, licences=frozenset(licences))
            if licences
            else ModelManager(models_dir)
        )
    return resolve_models(swap, installed)


def resolved_from_refs(
    refs: Iterable[ModelRef], options: SwapOptions, installed: ModelManager
) -> ResolvedModels:
    """The worker's side: the models a job spec names, each checked to be installed
    with the checksum the spec recorded, or ``ModelUnavailable`` naming it and the
    command that installs it. Nothing is resolved again and nothing is substituted."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {role: [] for role in MULTI_ROLES}
    for ref in refs:
        if ref.role in MULTI_ROLES:
            multi[ref.role].append(ref.name)
        elif ref.role in SINGLE_ROLES and ref.role not in single:
            single[ref.role] = ref.name
        else:
            raise ModelUnavailable(
                f"the job spec names a model for role {ref.role!r} it cannot use"
            )
        _check_ref(ref, installed)
    if not multi["detector"] or "swapper" not in single:
        missing = "detector" if not multi["detector"] else "swapper"
        raise ModelUnavailable(f"the job spec names no {missing} model")
    swapper = single["swapper"]
    if needs_recognizer(options, swapper, installed.registry) and "recognizer" not in single:
        raise ModelUnavailable(f"the job spec names no recognizer, which {swapper} needs")
    detectors = tuple(multi["detector"])
    return ResolvedModels(
        detector=detectors[0],
        swapper=swapper,
        enhancer=tuple(multi["enhancer"]),
        recognizer=single.get("recognizer"),
        converter=single.get("converter"),
        frame_enhancer=single.get("frame_enhancer"),
        detectors=detectors if len(detectors) > 1 else (),
        landmarker=single.get("landmarker"),
        landmark_regressor=single.get("landmark_regressor"),
        occluders=tuple(multi["occluder"]),
        parser=single.get("parser"),
        classifier=single.get("classifier"),
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
    if spec.sha256 and ref.sha256 != spec.sha256:
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
    if not spec.sha256 and ref.sha256:
        actual = _file_sha256(installed, ref.name)
        if actual and actual != ref.sha256:
            raise ModelUnavailable(
                f"this job runs the {ref.role} model {ref.name} file with sha256 "
                f"{ref.sha256}, but this worker's verified file has sha256 {actual}; "
                "run the job on a worker with the matching file"
            )
