"""Data Docs localisation: no script of any kind, no CDN, vendored styles (see tests/test_browser.py for
the same in a real browser on GX's own pages)."""
from __future__ import annotations

from slowburn.validate import DATA_DOCS_ASSETS, localise_data_docs

PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/x.css" />
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<style>.logo{background:url('https://s3.example.com/logo.png') no-repeat}</style></head>
<body><img src="https://s3.example.com/logo.png?id=tracking" alt="Great Expectations">
<td><img src=x onerror="fetch('//evil')" onload='steal()'></td><a href="javascript:alert(1)">x</a>
<SCRIPT>alert(2)</SCRIPT><div class="ok">value &lt;b&gt;</div></body></html>"""


def test_localise_strips_scripts_and_points_styles_at_vendored_copies(tmp_path):
    site = tmp_path / "site"
    (site / "validations" / "suite").mkdir(parents=True)
    (site / "index.html").write_text(PAGE, encoding="utf-8")
    (site / "validations" / "suite" / "run.html").write_text(PAGE, encoding="utf-8")
    assert localise_data_docs(site) == 2
    for page, prefix in ((site / "index.html", ""), (site / "validations" / "suite" / "run.html", "../../")):
        text = page.read_text(encoding="utf-8")
        lowered = text.lower()
        assert "<script" not in lowered and "onerror" not in lowered and "onload" not in lowered
        assert "javascript:" not in lowered and "https://" not in lowered and "//evil" not in lowered
        assert f'href="{prefix}static/vendor/css/bootstrap.min.css"' in text
        assert f'href="{prefix}static/vendor/fontawesome/css/all.min.css"' in text
        assert "bootstrap-dark" not in text and "Great Expectations" in text and "value &lt;b&gt;" in text
    assert (site / "static" / "vendor" / "css" / "bootstrap.min.css").read_bytes() == \
        (DATA_DOCS_ASSETS / "css" / "bootstrap.min.css").read_bytes()
    assert list((site / "static" / "vendor" / "fontawesome" / "webfonts").glob("*.woff2"))
    assert localise_data_docs(site) == 0  # idempotent: a rebuilt site is rewritten, a clean one is not
