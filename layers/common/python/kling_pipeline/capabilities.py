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

Kling runs two API designs side by side (docs/kling-contract.md, "The newer API design"). Each model
says which serves it: the legacy one (`/v1/videos/<kind>`, the model in the body's `model_name`) or the
newer one (`/<product>/<model>`, the model in the path, a body of `prompt`/`contents[]`, `settings` and
`options`, reachable only with an API key). `design_of` and `new_design_path` read it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

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
LEGACY_PROMPT = _notes("create bodies: prompt and negative_prompt up to 2,500 characters")
LEGACY_DESIGN = _notes("kinds and endpoints: model_name in the body, paths under /v1/videos/")


def _newer(fact: str) -> Source:
    return Source("2026-12-01", f"docs/kling-contract.md (the newer API design: {fact})")


NEW_PATHS = _newer("the model in the path; kling-3.0 on text-to-video too, its model page covering both")
NEW_AUTH = _newer("an API key works for both designs, the access/secret key JWT for the legacy design only")
NEW_RESOLUTIONS = _newer("settings.resolution 720p, 1080p or 4k")
NEW_DURATIONS_3_0 = _newer("Kling 3.0: integer durations of 3 to 15 s")
NEW_DURATIONS_2_6 = _newer("Kling 2.6: 5 or 10 s")
NEW_AUDIO_1080P = _newer("Kling 2.6: native audio only at 1080p")
NEW_FIRST_FRAME_ONLY = _newer("image-to-video/kling-3.0-turbo takes a first frame only")
NEW_PROMPT = _newer("prompt up to 3,072 characters (2,500 recommended)")
NEW_BODY = _newer("body fields: prompt/contents[], settings, options; no negative_prompt, cfg_scale, camera_control")


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


Design = Literal["legacy", "new"]
# The newer design's product names in its paths, by our kind (docs/kling-contract.md, the newer API design).
NEW_PRODUCTS = {"text2video": "text-to-video", "image2video": "image-to-video", "omni-video": "omni-video"}

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
    design: Fact[Design] = field(default_factory=lambda: Fact("legacy", LEGACY_DESIGN))
    max_prompt_chars: Fact[int] = field(default_factory=lambda: Fact(2500, LEGACY_PROMPT))
    # The newer design's rules (empty / False for a legacy model, which has none of them).
    resolutions: Fact[tuple[str, ...]] = field(default_factory=lambda: Fact((), NEW_RESOLUTIONS))
    audio_needs_1080p: Fact[bool] = field(default_factory=lambda: Fact(False, NEW_AUDIO_1080P))
    first_frame_only: Fact[bool] = field(default_factory=lambda: Fact(False, NEW_FIRST_FRAME_ONLY))
    # Fields of our request the design has no place for (the newer design: negative_prompt and the like).
    takes_negative_prompt: Fact[bool] = field(default_factory=lambda: Fact(True, LEGACY_DESIGN))
    takes_masks: Fact[bool] = field(default_factory=lambda: Fact(True, LEGACY_DESIGN))


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


def _new_design(
    name: str,
    kinds: tuple[str, ...],
    *,
    durations: Fact[tuple[str, ...]],
    audio_needs_1080p: bool = False,
    first_frame_only: bool = False,
) -> ModelSpec:
    """A model of the newer design: the model in the path, resolution instead of mode, reachable with an API
    key only. Sound is its `settings.audio` (native|off)."""
    return ModelSpec(
        name=name,
        kinds=Fact(kinds, NEW_PATHS),
        durations=durations,
        modes=Fact(ALL_MODES, MODES),  # not sent: the newer design has no mode (resolution says the quality)
        aspect_ratios=Fact(ALL_RATIOS, NEW_BODY),
        sound=Fact(True, NEW_BODY),
        cfg_scale=Fact(False, NEW_BODY),
        camera_control=Fact(False, NEW_BODY),
        end_frame_needs_pro=Fact(False, NEW_BODY),
        extendable=Fact(False, EXTEND),
        design=Fact("new", NEW_AUTH),
        max_prompt_chars=Fact(3072, NEW_PROMPT),
        resolutions=Fact(RESOLUTIONS, NEW_RESOLUTIONS),
        audio_needs_1080p=Fact(audio_needs_1080p, NEW_AUDIO_1080P),
        first_frame_only=Fact(first_frame_only, NEW_FIRST_FRAME_ONLY),
        takes_negative_prompt=Fact(False, NEW_BODY),
        takes_masks=Fact(False, NEW_BODY),
    )


RESOLUTIONS = ("720p", "1080p", "4k")
NEW_THREE_TO_FIFTEEN = Fact(THREE_TO_FIFTEEN, NEW_DURATIONS_3_0)

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
        # The newer design (docs/kling-contract.md, "The newer API design").
        _new_design(
            "kling-2.6", ("text2video",), durations=Fact(FIVE_OR_TEN, NEW_DURATIONS_2_6), audio_needs_1080p=True
        ),
        _new_design("kling-3.0", CLASSIC_KINDS, durations=NEW_THREE_TO_FIFTEEN),
        _new_design("kling-3.0-turbo", ("image2video",), durations=NEW_THREE_TO_FIFTEEN, first_frame_only=True),
        _new_design("kling-3.0-omni", ("omni-video",), durations=NEW_THREE_TO_FIFTEEN),
    )
}


def design_of(model: str | None) -> Design:
    """Which design serves a model: the newer one for the models the table says so; legacy otherwise
    (an unknown model goes, as always, to the kind's legacy path with its name in model_name)."""
    spec = MODELS.get(model or "")
    return spec.design.value if spec is not None else "legacy"


def new_design_path(kind: str, model: str) -> str:
    """The newer design's create path for a kind and model (`/text-to-video/kling-2.6`)."""
    spec = MODELS.get(model)
    if spec is None or spec.design.value != "new" or kind not in spec.kinds.value or kind not in NEW_PRODUCTS:
        raise ValueError(f"{model} is not served by Kling's newer design for {kind}")
    return f"/{NEW_PRODUCTS[kind]}/{model}"


NEW_DESIGN_TASKS_PATH = "/tasks"  # look-ups of newer-design tasks, by ids (docs/kling-contract.md)


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
    prompt_chars: int = 0
    negative_prompt: bool = False
    masks: bool = False
    resolution: str | None = None


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
    found += _design_violations(model, spec, asks)
    if asks.image_tail and asks.mode != "pro" and spec.end_frame_needs_pro.value:
        found.append(
            f"image_tail: an end frame needs mode 'pro' on {model} "
            f"({spec.end_frame_needs_pro.cite('end-frame-needs-pro')})"
        )
    return found


def _design_violations(model: str, spec: ModelSpec, asks: Asks) -> list[str]:
    """The rules that differ by design: the prompt's length, resolution, audio, frames, unplaced fields."""
    found: list[str] = []
    if asks.prompt_chars > spec.max_prompt_chars.value:
        found.append(
            f"prompt: {model} takes at most {spec.max_prompt_chars.value} characters, not {asks.prompt_chars} "
            f"({spec.max_prompt_chars.cite('prompt-length')})"
        )
    if asks.resolution is not None and asks.resolution not in spec.resolutions.value:
        takes = f"takes {', '.join(spec.resolutions.value)}" if spec.resolutions.value else "takes no resolution"
        use = "" if spec.resolutions.value else f"; use mode, or one of {', '.join(models_for('resolutions'))}"
        found.append(f"resolution: {model} {takes}{use} ({spec.resolutions.cite('resolutions')})")
    if asks.sound and spec.audio_needs_1080p.value and asks.resolution != "1080p":
        found.append(
            f"sound: {model} makes native audio only at 1080p; set resolution '1080p' or sound false "
            f"({spec.audio_needs_1080p.cite('audio-needs-1080p')})"
        )
    if asks.image_tail and spec.first_frame_only.value:
        found.append(
            f"image_tail: {model} takes a first frame only; remove image_tail or use kling-3.0 "
            f"({spec.first_frame_only.cite('first-frame-only')})"
        )
    if asks.negative_prompt and not spec.takes_negative_prompt.value:
        found.append(
            f"negative_prompt: {model} (Kling's newer design) takes no negative_prompt; say what to avoid in the "
            f"prompt ({spec.takes_negative_prompt.cite('newer-design-body')})"
        )
    if asks.masks and not spec.takes_masks.value:
        found.append(
            f"static_mask: {model} (Kling's newer design) takes no motion brush (static_mask/dynamic_masks); "
            f"use a legacy model such as kling-v1-6 ({spec.takes_masks.cite('newer-design-body')})"
        )
    return found


def is_known(model: str) -> bool:
    return model in MODELS


def unknown_model_warning(model: str) -> str:
    """A model the table does not know passes (Kling may know it), but a near miss is named: "kling-v2.6"
    is most likely a typo of "kling-v2-6" (or of "kling-2.6", its newer design's name: both are named), and
    Kling would refuse it only after the round trip."""
    close = difflib.get_close_matches(model, list(MODELS), n=2, cutoff=0.8)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return (
        f"model {model} is not in the capability table{hint}; it is passed to Kling as is and checked only by "
        "the rules that hold for every model"
    )


def models_for(predicate: str) -> list[str]:
    """Models with a feature or a kind, for docs and error messages: a kind name, or 'sound',
    'camera_control', 'cfg_scale', 'extendable', 'resolutions'."""
    if predicate in KINDS:
        return [name for name, spec in MODELS.items() if predicate in spec.kinds.value]
    return [name for name, spec in MODELS.items() if getattr(spec, predicate).value]


def _durations(values: tuple[str, ...]) -> str:
    numbers = sorted(int(v) for v in values)
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]} to {numbers[-1]}"
    return " or ".join(str(n) for n in numbers)
