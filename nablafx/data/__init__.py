"""Dataset layout parsing (ToneTwist AFx), validation, splits and chunk datasets."""

from nablafx.data.audio import read_audio
from nablafx.data.index import load_index
from nablafx.data.tonetwist import Pair, parse_knob_code, scan_device
from nablafx.errors import DatasetError

__all__ = ["DatasetError", "Pair", "load_index", "parse_knob_code", "read_audio", "scan_device"]
