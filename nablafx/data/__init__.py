"""Dataset layout parsing (ToneTwist AFx), validation, splits and chunk datasets."""

from nablafx.data.audio import DatasetError, read_audio
from nablafx.data.tonetwist import Pair, parse_knob_code, scan_device

__all__ = ["DatasetError", "Pair", "parse_knob_code", "read_audio", "scan_device"]
