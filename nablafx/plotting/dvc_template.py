"""The HTML template that makes ``dvc plots diff`` / ``dvc plots show`` draw offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without a network it is blank.
Its ``--html-template`` (set once in ``.dvc/config``: ``plots.html_template``) is a page with a
``{plot_divs}`` placeholder; this one carries the three libraries inline, taken from the
``vl-convert-python`` wheel in the lock (:func:`vl_convert.javascript_bundle`), and leaves out DVC's
``{scripts}`` placeholder (the CDN tags).

``python -m nablafx.plotting.dvc_template`` rewrites ``tools/dvc-plots.html``; a test checks the
committed file is what the locked vl-convert produces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VEGALITE_VERSION = "5.21"  # DVC's plot templates declare vega-lite v5 specs
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "tools" / "dvc-plots.html"

HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots (offline)</title>
<!-- vega {vega}, vega-lite {vegalite}, vega-embed {embed}: bundled by vl-convert-python {vlc}
     (nablafx.plotting.dvc_template); nothing is fetched from the network -->
<script>
(function () {  // the bundle's top-level names stay local; it exports window.vegaEmbed, vega, vegaLite
"""
TAIL = """
})();
</script>
<style>
body { font-family: system-ui, sans-serif; margin: 16px; }
table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def template_html() -> str:
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=VEGALITE_VERSION)
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
        if placeholder in bundle:  # DVC fills placeholders anywhere in the page; a closing tag ends the script
            raise RuntimeError(f"the vega bundle contains {placeholder!r}; it cannot be inlined as is")
    head = (HEAD.replace("{vega}", vlc.get_vega_version()).replace("{vegalite}", VEGALITE_VERSION)
            .replace("{embed}", vlc.get_vega_embed_version()).replace("{vlc}", vlc.__version__))
    return head + bundle + TAIL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nablafx.plotting.dvc_template", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    from nablafx.fileio import write_text_atomic

    write_text_atomic(args.out, template_html())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
