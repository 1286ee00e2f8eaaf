"""Display outputs made readable for a model (shared/output/display.py)."""

from __future__ import annotations

from smartcolab.shared.output.display import choose, html_to_text, image_extension, markdown_table

DATAFRAME_HTML = """<div><style scoped>.x{}</style><table border="1" class="dataframe">
<thead><tr style="text-align: right;"><th></th><th>a</th><th>b</th></tr>
<tr><th>idx</th><th></th><th></th></tr></thead>
<tbody><tr><th>0</th><td>1</td><td>x|y</td></tr><tr><th>1</th><td>2</td><td>z</td></tr></tbody>
</table><p>2 rows &times; 2 columns</p></div>"""


def test_a_dataframe_becomes_a_markdown_table() -> None:
    shown = choose({"text/plain": "   a  b\n0  1  x|y\n1  2  z", "text/html": DATAFRAME_HTML})
    assert shown.text_mime == "text/html"
    assert shown.text == ("| idx | a | b |\n|---|---|---|\n| 0 | 1 | x\\|y |\n| 1 | 2 | z |\n"
                          "2 rows × 2 columns")
    assert shown.attachments == []


def test_markdown_latex_and_json_are_given_as_source() -> None:
    md = choose({"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "# T"})
    assert (md.text, md.text_mime) == ("# T", "text/markdown")
    tex = choose({"text/plain": "x**2", "text/latex": "$x^2$"})
    assert tex.text == "$x^2$"
    js = choose({"text/plain": "<IPython.core.display.JSON object>",
                 "application/json": {"a": [1, 2]}})
    assert js.text == '{\n  "a": [\n    1,\n    2\n  ]\n}'


def test_images_of_every_raster_kind_and_the_figure_repr_dropped() -> None:
    for mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        shown = choose({"text/plain": "<Figure size 640x480 with 1 Axes>", mime: "QUJD\n"})
        assert (shown.image_mime, shown.image_base64, shown.text) == (mime, "QUJD", None)
    assert image_extension("image/jpeg") == "jpg" and image_extension("image/svg+xml") == "svg"


def test_svg_and_unknown_formats_become_attachments() -> None:
    shown = choose({"text/plain": "<IPython.core.display.SVG object>",
                    "image/svg+xml": "<svg/>", "application/vnd.custom+json": {"k": 1}})
    assert shown.text is None and shown.image_mime is None
    assert [(a.mime, a.extension) for a in shown.attachments] == [
        ("image/svg+xml", "svg"), ("application/vnd.custom+json", "json")]
    assert shown.attachments[1].data == '{\n "k": 1\n}'


def test_an_object_with_only_repr_html() -> None:
    shown = choose({"text/plain": "<__main__.Thing at 0x7f>", "text/html": "<b>bold</b> text"})
    assert shown.text == "bold text"


def test_plain_text_is_kept_and_scripts_are_not() -> None:
    assert choose({"text/plain": "42"}).text == "42"
    assert html_to_text("<p>a</p><script>evil()</script><p>b</p>") == "a\nb"
    assert markdown_table([]) == ""
    assert markdown_table([["h"], ["1", "2"]]) == "| h |  |\n|---|---|\n| 1 | 2 |"
