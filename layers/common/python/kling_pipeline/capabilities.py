"""What each Kling model takes, as data: the kinds it serves, its durations, modes, aspect ratios and
features, each fact with the date it was checked and where it comes from (kept here for reviewers;
a refusal names only the rule).

Kling adds models and fields often, and its documentation is spread over copies and mirrors, so the
facts live here in one table instead of in validators: a model Kling ships next month is one entry,
and a reviewer can see which source each refusal rests on. Validation (requests.py) follows the
table and names the rule it applied. A model that is not in the table passes with a warning and is
checked only by the rules that hold for every model (requests.py), never refused: Kling may accept
what this table does not know yet, and a refusal by Kling costs nothing (1201 makes no task).

Kinds map to Kling's endpoint paths here too (`endpoint_path`), so every call about a job (create,
the callback's confirmation, reconciliation, the poller) uses its kind's path.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """Where a fact comes from, and when it was last checked there."""

    checked: str  # YYYY-MM-DD
    where: str


# docs/kling-contract.md gives each fact of Kling's contract with its public source (Kling's API
# reference, wrappers, public request logs); the section each fact comes from is named.
def _notes(section: str) -> Source:
    return Source("2026-11-23", f"docs/kling-contract.md ({section})")


MODEL_LIST = _notes("text2video body: model_name; 2026 request logs show kling-v3 accepted")
DURATIONS = _notes('duration: "5"/"10" for v1.x-v2.x, 3 to 15 s for v3 and omni models')
MODES = _notes("mode: std or pro")
ASPECT_RATIOS = _notes("aspect_ratio: 16:9, 9:16, 1:1")
SOUND = _notes("sound: on/off, v2.6 and later; omni video has native audio")
CFG_SCALE = _notes("cfg_scale: not supported by v2.x models")
CAMERA = _notes("camera_control: narrowly supported, 1201 otherwise; not an omni-video field")
END_FRAME = _notes("mode: pro is needed for end frames (image_tail)")
MULTI_IMAGE = _notes("multi-image2video body: model_name kling-v1-6 and later")
OMNI = _notes("endpoints: omni video (v3-omni, o1); omni-video image_list up to 7 with first_frame/end_frame")
EXTEND = _notes("video-extend body: only videos made by V1.0/1.5/1.6 can be extended")


@dataclass(frozen=True)
class Fact(Generic[T]):
    """One fact about a model, with its source."""

    value: T
    source: Source

    def cite(self, rule: str) -> str:
        """The rule's name for a refusal; its source stays here, for reviewers, not in what users read."""
        return f"rule {rule}"


@dataclass(frozen=True)
class Kind:
    """A kind of task: its endpoint path under /v1/videos/, and the model used when a request names
    none and the deployment's default model does not serve this kind."""

    name: str
    path: str
    default_model: str | None  # None: the kind takes no model_name (video-extend)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("text2video", "text2video", "kling-v2-6"),
        Kind("image2video", "image2video", "kling-v2-6"),
        Kind("multi-image2video", "multi-image2video", "kling-v1-6"),
        Kind("video-extend", "video-extend", None),
        Kind("omni-video", "omni-video", "kling-v3-omni"),
    )
}
# The default of the DefaultModel template parameter (a test pins the two together): requests
# checked where the deployment's default is not known (the CLI) are checked against this one.
DEFAULT_MODEL = "kling-v2-6"


def endpoint_path(kind: str) -> str:
    """Kling's path for every call about a task of this kind (create, get, look-up, list)."""
    try:
        return f"/v1/videos/{KINDS[kind].path}"
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}") from None


@dataclass(frozen=True)
class ModelSpec:
    """What one model takes."""

    name: str
    kinds: Fact[tuple[str, ...]]
    durations: Fact[tuple[str, ...]]
    modes: Fact[tuple[str, ...]]
    aspect_ratios: Fact[tuple[str, ...]]
    sound: Fact[bool]
    cfg_scale: Fact[bool]
    camera_control: Fact[bool]
    end_frame_needs_pro: Fact[bool]
    extendable: Fact[bool]  # its videos can be extended with video-extend


FIVE_OR_TEN = ("5", "10")
THREE_TO_FIFTEEN = tuple(str(s) for s in range(3, 16))
ALL_MODES = ("std", "pro")
ALL_RATIOS = ("16:9", "9:16", "1:1")
CLASSIC_KINDS = ("text2video", "image2video")
WITH_MULTI_IMAGE = ("text2video", "image2video", "multi-image2video")


def _model(
    name: str,
    kinds: Fact[tuple[str, ...]],
    *,
    durations: tuple[str, ...],
    sound: bool,
    cfg_scale: bool,
    camera_control: bool,
    extendable: bool,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        kinds=kinds,
        durations=Fact(durations, DURATIONS),
        modes=Fact(ALL_MODES, MODES),
        aspect_ratios=Fact(ALL_RATIOS, ASPECT_RATIOS),
        sound=Fact(sound, SOUND),
        cfg_scale=Fact(cfg_scale, CFG_SCALE),
        camera_control=Fact(camera_control, CAMERA),
        end_frame_needs_pro=Fact(True, END_FRAME),
        extendable=Fact(extendable, EXTEND),
    )


def _v1(name: str, kinds: Fact[tuple[str, ...]]) -> ModelSpec:
    return _model(name, kinds, durations=FIVE_OR_TEN, sound=False, cfg_scale=True, camera_control=True, extendable=True)


def _v2(name: str, *, sound: bool = False) -> ModelSpec:
    return _model(
        name,
        Fact(WITH_MULTI_IMAGE, MULTI_IMAGE),
        durations=FIVE_OR_TEN,
        sound=sound,
        cfg_scale=False,
        camera_control=True,
        extendable=False,
    )


def _omni(name: str) -> ModelSpec:
    # cfg_scale: omni-video references list it; camera_control is not an omni-video field.
    return _model(
        name,
        Fact(("omni-video",), OMNI),
        durations=THREE_TO_FIFTEEN,
        sound=True,
        cfg_scale=True,
        camera_control=False,
        extendable=False,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _v1("kling-v1", Fact(CLASSIC_KINDS, MODEL_LIST)),
        _v1("kling-v1-5", Fact(CLASSIC_KINDS, MODEL_LIST)),
        _v1("kling-v1-6", Fact(WITH_MULTI_IMAGE, MULTI_IMAGE)),
        _v2("kling-v2-master"),
        _v2("kling-v2-1"),
        _v2("kling-v2-1-master"),
        _v2("kling-v2-5-turbo"),
        _v2("kling-v2-6", sound=True),
        # v3: whether cfg_scale is taken is not documented; never refuse what Kling may accept.
        _model(
            "kling-v3",
            Fact(WITH_MULTI_IMAGE, MULTI_IMAGE),
            durations=THREE_TO_FIFTEEN,
            sound=True,
            cfg_scale=True,
            camera_control=True,
            extendable=False,
        ),
        _omni("kling-v3-omni"),
        _omni("kling-video-o1"),
    )
}


def effective_model(kind: str, requested: str | None, default_model: str) -> str | None:
    """The model a request's task will use: its own, else the deployment's default when that model
    serves the kind, else the kind's own default. None for kinds that take no model (video-extend)."""
    spec = KINDS.get(kind)
    if spec is None or spec.default_model is None:
        return None
    if requested:
        return requested
    default = MODELS.get(default_model)
    if default is not None and kind not in default.kinds.value:
        return spec.default_model
    return default_model


@dataclass(frozen=True)
class Asks:
    """What a request asks of its model, in the terms of the table."""

    kind: str
    duration: str
    mode: str
    aspect_ratio: str | None
    sound: bool | None
    cfg_scale: bool
    camera_control: bool
    image_tail: bool
    extend_steps: int = 0


def violations(model: str, asks: Asks) -> list[str]:
    """'field: why (rule ...)' for each fact of the table the request goes against; [] for a model
    the table does not know (see `is_known`)."""
    spec = MODELS.get(model)
    if spec is None:
        return []
    found: list[str] = []
    if asks.kind not in spec.kinds.value:
        found.append(
            f"kind: {model} does not serve {asks.kind} (it serves {', '.join(spec.kinds.value)}); "
            f"use another model or kind ({spec.kinds.cite('kinds')})"
        )
    if asks.duration not in spec.durations.value:
        found.append(
            f"duration: {model} takes {_durations(spec.durations.value)} seconds, not {asks.duration} "
            f"({spec.durations.cite('durations')})"
        )
    if asks.mode not in spec.modes.value:
        found.append(f"mode: {model} takes {', '.join(spec.modes.value)} ({spec.modes.cite('modes')})")
    if asks.aspect_ratio is not None and asks.aspect_ratio not in spec.aspect_ratios.value:
        found.append(
            f"aspect_ratio: {model} takes {', '.join(spec.aspect_ratios.value)} "
            f"({spec.aspect_ratios.cite('aspect-ratios')})"
        )
    if asks.sound and not spec.sound.value:
        found.append(f"sound: {model} makes no sound; sound needs kling-v2-6 or later ({spec.sound.cite('sound')})")
    if asks.cfg_scale and not spec.cfg_scale.value:
        found.append(f"cfg_scale: {model} does not take cfg_scale; remove it ({spec.cfg_scale.cite('cfg-scale')})")
    if asks.camera_control and not spec.camera_control.value:
        cite = spec.camera_control.cite("camera-control")
        found.append(f"camera_control: {model} does not take camera_control ({cite})")
    if asks.extend_steps and not spec.extendable.value:
        found.append(
            f"extend: videos made by {model} cannot be extended; use one of {', '.join(models_for('extendable'))} "
            f"for an extend chain ({spec.extendable.cite('extendable')})"
        )
    if asks.image_tail and asks.mode != "pro" and spec.end_frame_needs_pro.value:
        found.append(
            f"image_tail: an end frame needs mode 'pro' on {model} "
            f"({spec.end_frame_needs_pro.cite('end-frame-needs-pro')})"
        )
    return found


def is_known(model: str) -> bool:
    return model in MODELS


def unknown_model_warning(model: str) -> str:
    """A model the table does not know passes (Kling may know it), but a near miss is named: "kling-v2.6"
    is most likely a typo of "kling-v2-6", and Kling would refuse it only after the round trip."""
    close = difflib.get_close_matches(model, list(MODELS), n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"model {model} is not in the capability table{hint}; it is passed to Kling as is and checked only by "
        "the rules that hold for every model"
    )


def models_for(predicate: str) -> list[str]:
    """Models with a feature or a kind, for docs and error messages: a kind name, or 'sound',
    'camera_control', 'cfg_scale', 'extendable'."""
    if predicate in KINDS:
        return [name for name, spec in MODELS.items() if predicate in spec.kinds.value]
    return [name for name, spec in MODELS.items() if getattr(spec, predicate).value]


def _durations(values: tuple[str, ...]) -> str:
    numbers = sorted(int(v) for v in values)
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]} to {numbers[-1]}"
    return " or ".join(str(n) for n in numbers)
