"""The demo server over HTTP: the page, the model's info, a real photo through ``POST /api/generate`` (the
PNGs are the plugins' visualizer drawings of what the pipeline generates with the same settings), and every
bad request answered with one line."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image


def _get(server, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=60) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _post(server, payload, path: str = "api/generate") -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _png(item: dict) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(item["png"])))
    assert img.format == "PNG"
    return img.convert("RGB")


def test_page_and_info(demo_server):
    status, ctype, body = _get(demo_server, "/")
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    for marker in ('id="file"', 'id="drop"', 'id="targets"', 'id="steps"', 'id="temperature"', 'id="seed"',
                   'id="grammar"', 'id="json"', '"api/generate"'):
        assert marker in page
    status, ctype, body = _get(demo_server, "/api/info")
    info = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert [t["name"] for t in info["targets"]] == ["caption", "color_palette", "depth", "tok_rgb"]
    assert {t["name"]: t["kind"] for t in info["targets"]}["depth"] == "image"
    assert info["image_inputs"] == ["depth", "rgb", "tok_rgb"] and info["default_image_input"] == "rgb"
    assert info["text_inputs"] == ["caption", "color_palette"]
    assert info["default_targets"] == ["depth"]  # not tok_rgb, the tokenized twin of the photo input
    assert _get(demo_server, "/nope")[0] == 404 and _get(demo_server, "/favicon.ico")[0] == 204


def test_a_photo_generates_the_pipelines_outputs(demo_server, demo_app, photo_png):
    from fourm_core.pipeline import draw_raw

    request = {"image": "data:image/png;base64," + base64.b64encode(photo_png).decode(), "filename": "astronaut.png",
               "targets": ["depth", "caption", "color_palette"], "steps": 2, "temperature": 0.5, "seed": 3}
    status, res = _post(demo_server, request)
    assert status == 200, res
    assert [o["name"] for o in res["outputs"]] == ["depth", "caption", "color_palette"]
    assert [i["name"] for i in res["inputs"]] == ["rgb"] and _png(res["inputs"][0]).size == (256, 256)
    assert res["settings"] == {"targets": ["depth", "caption", "color_palette"], "seed": 3, "grammar": True,
                               "steps": 2, "temperature": 0.5}
    depth, caption, palette = res["outputs"]
    assert depth["kind"] == "image" and depth["value"]["shape"] == [224, 224, 1] and depth["tokens"] == 196
    assert isinstance(caption["value"], str)
    colors = palette["value"]["colors"]  # the grammar makes the palette parse
    assert 1 <= len(colors) <= 7 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)
    assert not any("warning" in o for o in res["outputs"])

    # the same generation through the pipeline: the page shows its outputs, drawn by the plugins' visualizers
    photo = Image.open(io.BytesIO(photo_png)).convert("RGB")
    out = demo_app.pipe({"rgb": photo}, ["depth", "caption", "color_palette"], seed=3, steps=2, temperature=0.5)
    assert caption["value"] == out["caption"] and palette["value"] == json.loads(json.dumps(out["color_palette"]))
    assert depth["value"]["max"] == pytest.approx(float(out["depth"].max()))
    for item in res["outputs"]:
        spec = demo_app.pipe.modalities[item["name"]]
        expected = np.asarray(draw_raw(spec, out[item["name"]], 256).convert("RGB"))
        assert np.array_equal(np.asarray(_png(item)), expected), item["name"]
    assert np.asarray(_png(depth)).std() > 0  # a drawing, not a blank tile


def test_settings_reach_the_pipeline(demo_server, demo_app, photo_png):
    image = base64.b64encode(photo_png).decode()
    base = {"image": image, "targets": ["color_palette"], "temperature": 1.0, "seed": 5}
    first, again = _post(demo_server, base)[1], _post(demo_server, base)[1]
    assert first["outputs"][0]["value"] == again["outputs"][0]["value"]  # the seed makes it reproducible
    others = [_post(demo_server, {**base, "seed": seed})[1]["outputs"][0]["value"] for seed in (6, 7)]
    assert any(v != first["outputs"][0]["value"] for v in others)  # ... and the seed is used
    status, free = _post(demo_server, {**base, "grammar": False})
    assert status == 200 and free["settings"]["grammar"] is False
    photo = Image.open(io.BytesIO(photo_png)).convert("RGB")
    direct = demo_app.pipe({"rgb": photo}, ["color_palette"], seed=5, temperature=1.0, grammar=False,
                           decode_errors="text")["color_palette"]
    assert free["outputs"][0]["value"] == json.loads(json.dumps(direct))
    if isinstance(direct, str):  # an untrained model without its grammar may write an unparseable palette
        assert free["outputs"][0]["warning"].startswith("the generated color_palette sequence could not be parsed")


def test_text_and_array_inputs(demo_server, fourm_photos):
    status, res = _post(demo_server, {"texts": {"caption": "a photo of an astronaut"}, "targets": ["depth"],
                                      "steps": 1})
    assert status == 200, res
    assert [i["name"] for i in res["inputs"]] == ["caption"] and res["outputs"][0]["value"]["shape"] == [224, 224, 1]
    buf = io.BytesIO()
    np.save(buf, fourm_photos[0])
    status, res = _post(demo_server, {"image": base64.b64encode(buf.getvalue()).decode(), "filename": "photo.npy",
                                      "targets": "tok_rgb", "steps": 1})
    assert status == 200, res
    assert res["outputs"][0]["value"]["shape"] == [224, 224, 3]
    status, res = _post(demo_server, {"targets": ["caption"], "temperature": 0})  # no input: unconditional
    assert status == 200 and res["inputs"] == [] and isinstance(res["outputs"][0]["value"], str)


PHOTO = base64.b64encode(b"not an image at all").decode()


@pytest.mark.parametrize("payload, words", [
    (b"{not json", "not a JSON object"),
    ([1, 2], "must be a JSON object"),
    ({"targets": ["depth"], "colour": 1}, "unknown key(s) 'colour'"),
    ({"targets": ["sky"]}, "does not know modality 'sky'"),
    ({"targets": []}, "targets must be a non-empty list"),
    ({"targets": ["depth", "depth"]}, "name a modality twice"),
    ({"targets": ["depth"], "image": PHOTO, "filename": "x.png"}, "cannot read 'x.png' as an image"),
    ({"targets": ["depth"], "image": "%%%"}, "not valid base64"),
    ({"targets": ["depth"], "image": PHOTO, "input": "caption"}, "'caption' is not an image input"),
    ({"targets": ["depth"], "image": PHOTO, "filename": "a.npy"}, "not a readable .npy array"),
    ({"targets": ["depth"], "texts": {"depth": "x"}}, "'depth' is not a text input"),
    ({"targets": ["depth"], "steps": 0}, "steps must be an integer ≥ 1"),
    ({"targets": ["depth"], "steps": 2.5}, "steps must be an integer"),
    ({"targets": ["depth"], "temperature": -1}, "temperature must be a number ≥ 0"),
    ({"targets": ["depth"], "seed": "x"}, "seed must be an integer"),
    ({"targets": ["depth"], "grammar": "yes"}, "grammar must be true or false"),
])
def test_bad_requests_get_one_line(demo_server, payload, words):
    status, res = _post(demo_server, payload)
    assert status == 400 and set(res) == {"error"}
    assert words in res["error"] and "\n" not in res["error"] and "Traceback" not in res["error"]


def test_unknown_endpoint_form_posts_and_a_bug(demo_server, demo_app):
    status, res = _post(demo_server, {}, path="api/other")
    assert status == 404 and "POST /api/generate" in res["error"]
    form = urllib.request.Request(demo_server.url + "api/generate", data=b'{"targets": ["depth"]}',
                                  headers={"Content-Type": "text/plain"})  # what another site's form may send
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(form, timeout=30)
    assert err.value.code == 415 and "application/json" in json.loads(err.value.read())["error"]

    class Broken:  # the real pipeline, except that generation hits a bug
        def __getattr__(self, name):
            return getattr(demo_app.pipe, name)

        def __call__(self, *args, **kwargs):
            raise RuntimeError("boom\nsecond line")

    from fourm_demo.app import DemoApp

    status, res = DemoApp(Broken()).respond(json.dumps({"targets": ["depth"]}).encode())
    assert status == 500 and res["error"].startswith("internal error (RuntimeError: boom second line)")
