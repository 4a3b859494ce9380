"""Which OpenVINO device a model runs on: checked against the machine before a pipeline compiles, and against what
each pipeline can run on.

Device names are passed to OpenVINO as OVMS passes them: ``CPU``, ``GPU``, ``GPU.0``, ``NPU``, and the virtual
devices ``AUTO`` (``AUTO:GPU,CPU``), ``HETERO:GPU,CPU`` and ``MULTI:GPU,CPU``. OpenVINO GenAI 2026.4's
continuous-batching pipeline runs on one execution device: on this CPU-only machine it loaded and answered with
``AUTO``, ``AUTO:CPU`` and ``HETERO:CPU`` (each resolves to CPU), and failed its first step with ``MULTI:CPU`` ("The
tensor element type is not corresponding with output element type (u8 != dynamic)"), so ``MULTI`` is refused for it.
The stateful ``LLMPipeline`` loaded and answered with all four. See ``docs/devices.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The virtual devices, which name the real ones they choose from or split across after a colon.
VIRTUAL = ("AUTO", "HETERO", "MULTI")

#: NPU's static-shape settings (``plugin_config``): the longest prompt the compiled model takes, and the room it
#: keeps for the answer beyond it. NPU compiles a language model for fixed shapes; other devices reject the keys.
MAX_PROMPT_LEN = "MAX_PROMPT_LEN"
MIN_RESPONSE_LEN = "MIN_RESPONSE_LEN"
NPU_STATIC_SHAPE = (MAX_PROMPT_LEN, MIN_RESPONSE_LEN)
#: NPU's ``MAX_PROMPT_LEN`` when plugin_config leaves it out (OpenVINO GenAI's NPU default, as OVMS documents it).
NPU_DEFAULT_MAX_PROMPT_LEN = 1024


def device_base(device: str) -> str:
    """The device's kind without its index: ``GPU`` for ``GPU.1``, ``AUTO`` for ``AUTO:GPU,CPU``."""
    return device.partition(":")[0].split(".")[0].strip().upper()


def is_npu(device: str) -> bool:
    """Whether ``device`` is an NPU (``NPU``, ``NPU.0``), which OVMS serves on the stateful pipeline only."""
    return device_base(device) == "NPU"


def check_device(device: str, available: list[str]) -> None:
    """Raise ``ValueError`` naming the devices that exist if ``device`` (or one it lists) does not."""
    head, _, rest = device.partition(":")
    wanted = [d.strip() for d in rest.split(",") if d.strip()] if head in VIRTUAL else [device]
    bases = {d.split(".")[0] for d in available}
    missing = [d for d in wanted if d not in available and d.split(".")[0] not in bases]
    if missing:
        raise ValueError(f"device '{device}' is not available: {', '.join(missing)} not found; "
                         f"this machine has {', '.join(available) or 'no OpenVINO devices'}")


def checked_device(device: str) -> str:
    """``device``, once :func:`check_device` has found it on this machine."""
    import openvino

    check_device(device, openvino.Core().available_devices)
    return device


def check_batching_device(device: str) -> None:
    """Raise ``ValueError`` for a device the continuous-batching pipeline cannot run on: ``MULTI`` (several devices
    at once) and NPU (served on the stateful pipeline, as OVMS serves it)."""
    base = device_base(device)
    if base == "MULTI":
        raise ValueError(f"device '{device}': the continuous-batching pipeline runs on one execution device, and "
                         f"MULTI runs every request on several (OpenVINO GenAI 2026.4 failed its first step on "
                         f"MULTI:CPU): use AUTO:... (one device, chosen at load) or HETERO:... (one model split "
                         f"across devices), or pipeline_type LM, which runs one request at a time")
    if base == "NPU":
        raise ValueError(f"device '{device}': NPU runs language models on the stateful pipeline only, one request "
                         f"at a time (as OVMS serves it): set pipeline_type LM (or VLM), or leave it out")


def check_static_shape_settings(device: str, plugin_config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when plugin_config sets NPU's static-shape settings for another device: they are NPU
    properties, and the CPU plugin refused them ("Unsupported property MAX_PROMPT_LEN by CPU plugin")."""
    given = [key for key in NPU_STATIC_SHAPE if key in plugin_config]
    if given and not is_npu(device):
        raise ValueError(f"plugin_config sets {' and '.join(given)}, NPU's static-shape settings, for device "
                         f"'{device}', which compiles the model for any prompt length: remove "
                         f"{'them' if len(given) > 1 else 'it'}, or serve on NPU")
    for key in given:
        value = plugin_config[key]
        if isinstance(value, bool) or not str(value).strip().isdigit() or int(str(value)) < 1:
            raise ValueError(f"plugin_config's {key} must be a whole number of tokens above 0 (got {value!r})")


def vision_properties(device: str, plugin_config: Mapping[str, Any]) -> dict[str, Any]:
    """A VLM's properties for ``VLMPipeline``: on NPU, its static-shape settings go under
    ``DEVICE_PROPERTIES: {"NPU": {...}}``, where OpenVINO GenAI's NPU guide says a VLM takes them (an LLM takes them
    at the top level, as OVMS's plugin_config writes them)."""
    if not is_npu(device) or not any(key in plugin_config for key in NPU_STATIC_SHAPE):
        return dict(plugin_config)
    properties = {key: value for key, value in plugin_config.items() if key not in NPU_STATIC_SHAPE}
    nested = dict(properties.get("DEVICE_PROPERTIES", {}))
    nested["NPU"] = {**nested.get("NPU", {}), **{key: plugin_config[key] for key in NPU_STATIC_SHAPE
                                                  if key in plugin_config}}
    return {**properties, "DEVICE_PROPERTIES": nested}


def max_prompt_tokens(device: str, plugin_config: Mapping[str, Any]) -> int | None:
    """The longest prompt the model takes on ``device``: NPU's ``MAX_PROMPT_LEN`` (1024 when left out), or
    ``None`` (the context alone bounds it) on other devices."""
    if not is_npu(device):
        return None
    return int(str(plugin_config.get(MAX_PROMPT_LEN, NPU_DEFAULT_MAX_PROMPT_LEN)))
