"""Dataset layout parsing (ToneTwist AFx), validation, splits and chunk datasets."""

from nablafx.data.audio import load_audio, read_audio
from nablafx.data.index import load_index
from nablafx.data.tonetwist import Layout, Pair, parse_knob_code, scan_device, scan_layout
from nablafx.errors import DatasetError

__all__ = ["DatasetError", "Layout", "Pair", "load_audio", "load_index", "parse_knob_code", "read_audio",
           "scan_device", "scan_layout"]
