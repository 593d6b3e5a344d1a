"""Every bad input gets one line; validate-data, evaluate and package-submission agree; submissions,
checkpoints and file modes cannot be broken silently. The probe's cases are the cases here."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.png import png_16bit_rgb, png_header_only
from spatialflow.cli import main
from spatialflow.data.coco_panoptic import PanopticWriter
from spatialflow.engine import checkpoint as ckpt
from spatialflow.errors import CheckpointError, ConfigError, DataError
from spatialflow.panoptic.submission import package_submission, verify_zip
from spatialflow.utils.atomic import atomic_write_json, atomic_write_text

CATEGORIES = [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]
IDS = np.array([[0, 5, 5, 9], [9, 5, 5, 9], [9, 9, 9, 9]])


def make_set(root: Path) -> tuple[Path, Path]:
    """A valid COCO-panoptic set of two 3x4 images: root/pan.json + root/pan/{a,b}.png."""
    with PanopticWriter(root / "pan", root / "pan.json", CATEGORIES) as writer:
        for image_id, name in ((1, "a.png"), (2, "b.png")):
            writer.add({"id": image_id, "file_name": name, "height": 3, "width": 4}, IDS,
                       [{"id": 5, "category_id": 1}, {"id": 9, "category_id": 2}])
    return root / "pan.json", root / "pan"


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def replace_in_file(path: Path, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` in the file's bytes (for edits json.dumps cannot write)."""
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def _set(key, value):
    def change(data):
        target = data
        for part in key[:-1]:
            target = target[part]
        target[key[-1]] = value
    return change


# case -> (change to the set, the file the line names, what the line says)
CASES = {
    "16-bit RGB PNG": (lambda root: png_16bit_rgb(root / "pan" / "a.png"),
                       "a.png", "panoptic PNG must be 8-bit RGB (or RGBA), got 16-bit RGB"),
    "JPEG saved as .png": (lambda root: Image.fromarray(np.full((3, 4, 3), 90, np.uint8)).save(
                               root / "pan" / "a.png", format="JPEG"),
                           "a.png", "cannot read PNG: not a PNG file (it is a JPEG); expected an 8-bit RGB panoptic PNG"),
    "no images": (lambda root: edit_json(root / "pan.json", lambda d: (d["images"].clear(), d["annotations"].clear())),
                  "pan.json", "has no annotations; expected at least one annotated image"),
    "duplicate image id": (lambda root: edit_json(root / "pan.json", _set(["images", 1, "id"], 1)),
                           "pan.json", "duplicate image 1 (and 1 more problem in this file)"),
    "JSON size differs from PNG": (lambda root: edit_json(root / "pan.json", _set(["images", 0, "height"], 5)),
                                   "a.png", "PNG is 3x4 (HxW), the JSON says 5x4 for image 1"),
    "bbox is a string": (lambda root: edit_json(root / "pan.json",
                                                _set(["annotations", 0, "segments_info", 0, "bbox"], "abc")),
                         "pan.json", 'image 1 segments_info[0].bbox is "abc" (a string); expected [x, y, width, '
                                     'height], finite numbers >= 0'),
    "bbox holds NaN": (lambda root: edit_json(root / "pan.json",
                                              _set(["annotations", 0, "segments_info", 0, "bbox", 0], float("nan"))),
                       "pan.json", "image 1 segments_info[0].bbox is [NaN, 0, 2, 2] (a list); expected [x, y, width, "
                                   "height], finite numbers >= 0"),
    "bbox holds Infinity": (lambda root: edit_json(root / "pan.json",
                                                   _set(["annotations", 1, "segments_info", 1, "bbox", 3], 1e999)),
                            "pan.json", "image 2 segments_info[1].bbox is [0, 0, 4, Infinity] (a list); expected "
                                        "[x, y, width, height], finite numbers >= 0"),
    "negative bbox width": (lambda root: edit_json(root / "pan.json",
                                                   _set(["annotations", 0, "segments_info", 0, "bbox", 2], -2)),
                            "pan.json", "image 1 segments_info[0].bbox is [1, 0, -2, 2] (a list); expected [x, y, "
                                        "width, height], finite numbers >= 0"),
    "area is Infinity": (lambda root: edit_json(root / "pan.json",
                                                _set(["annotations", 0, "segments_info", 1, "area"], float("inf"))),
                         "pan.json", "image 1 segments_info[1].area is Infinity (a number); expected a finite number "
                                     ">= 0"),
    "newline in an image file_name": (
        lambda root: edit_json(root / "pan.json", _set(["images", 0, "file_name"], "a\nb.jpg")),
        "pan.json", "image 1: file_name 'a\\nb.jpg' contains the control character '\\n'"),
    "lone surrogate in an image file_name": (  # the JSON escape \udcff: text that has no UTF-8 encoding
        lambda root: replace_in_file(root / "pan.json", b'"a.png"', b'"\\udcff.png"'),
        "pan.json", "image 1: file_name '\\udcff.png' contains '\\udcff', which is not UTF-8 text (a lone surrogate)"),
    "latin-1 byte in a category name": (
        lambda root: replace_in_file(root / "pan.json", b'"stuff"', b'"st\xfcff"'),
        "pan.json", "not UTF-8 text (byte 0xfc at offset {offset}); expected a UTF-8 JSON file"),
    "JSON nested 100,000 deep": (lambda root: (root / "pan.json").write_text("[" * 100_000 + "]" * 100_000),
                                 "pan.json", "nested too deeply to parse; a COCO-panoptic JSON is at most a few levels "
                                             "deep"),
    "PNG header larger than the JSON says": (lambda root: png_header_only(root / "pan" / "a.png", 20_000, 20_000),
                                             "a.png", "PNG header says 20000x20000 (HxW) pixels, more than the "
                                                      "67,108,864 a panoptic PNG may have (refused before decoding)"),
    "PNG header differs from the JSON size": (lambda root: png_header_only(root / "pan" / "a.png", 3000, 4000),
                                              "a.png", "PNG is 3000x4000 (HxW), the JSON says 3x4 for image 1"),
    "height is a string": (lambda root: edit_json(root / "pan.json", _set(["images", 0, "height"], "3")),
                           "pan.json", 'images[0].height is "3" (a string); expected a positive integer'),
    "segment id is a string": (lambda root: edit_json(root / "pan.json",
                                                      _set(["annotations", 0, "segments_info", 0, "id"], "5")),
                               "pan.json", 'image 1 segments_info[0].id is "5" (a string); expected an integer in '
                                           '[0, 256**3)'),
}


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"spatialflow {command}: error: ")
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_three_commands_reject_the_same_file_with_the_same_line(tmp_path, capsys, case):
    change, file_name, message = CASES[case]
    good_json, good_dir = make_set(tmp_path / "good")
    bad_json, bad_dir = make_set(tmp_path / "bad")
    change(tmp_path / "bad")
    if "{offset}" in message:
        message = message.format(offset=bad_json.read_bytes().index(b"\xfc"))
    expected = f"{bad_dir / file_name if file_name.endswith('.png') else bad_json}: {message}"

    assert main(["validate-data", "--json", str(bad_json), "--png-dir", str(bad_dir)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [expected, f"1 problem(s) in {bad_json}"]

    # evaluate: the bad set as ground truth against a good prediction.
    assert main(["evaluate", "--gt-json", str(bad_json), "--gt-dir", str(bad_dir),
                 "--pred-json", str(good_json), "--pred-dir", str(good_dir)]) == 2
    assert _one_line(capsys, "evaluate") == f"spatialflow evaluate: error: {expected}"

    # package-submission: the bad set as the prediction.
    assert _refused_submission(capsys, bad_json, bad_dir, tmp_path) == f"spatialflow package-submission: error: {expected}"


def _refused_submission(capsys, json_path, png_dir, tmp_path) -> str:
    """package-submission exits 2 with one line (returned) and writes no upload folder."""
    out = tmp_path / "upload"
    assert main(["package-submission", "--pred-json", str(json_path), "--pred-dir", str(png_dir),
                 "--method", "m", "--out-dir", str(out)]) == 2
    line = _one_line(capsys, "package-submission")
    assert not out.exists()
    return line


def test_jpeg_as_png_among_many_segments_is_one_line(tmp_path, capsys):
    # The probe's case: a JPEG's noisy colours read as ids gave 111,038 lines; now one per file.
    json_path, png_dir = make_set(tmp_path)
    noise = np.random.default_rng(0).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    Image.fromarray(noise).save(png_dir / "b.png", format="JPEG")
    assert main(["validate-data", "--json", str(json_path), "--png-dir", str(png_dir)]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 2  # the line + the count


def test_validate_and_evaluate_accept_the_good_set(tmp_path, capsys):
    json_path, png_dir = make_set(tmp_path)
    assert main(["validate-data", "--json", str(json_path), "--png-dir", str(png_dir)]) == 0
    assert main(["evaluate", "--gt-json", str(json_path), "--gt-dir", str(png_dir),
                 "--pred-json", str(json_path), "--pred-dir", str(png_dir)]) == 0
    assert "All       |  100.0  100.0  100.0     2" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ submissions


SUBMISSION_CASES = {
    "duplicate file name": (_set(["annotations", 1, "file_name"], "a.png"), "duplicate annotation file_name 'a.png'"),
    "absolute file name": (_set(["annotations", 0, "file_name"], "/tmp/a.png"),
                           "annotation of image 1: file_name '/tmp/a.png' is an absolute path; expected a name "
                           "relative to the PNG folder"),
    "'..' in file name": (_set(["annotations", 0, "file_name"], "../pan/a.png"),
                          "annotation of image 1: file_name '../pan/a.png' contains '..'; expected a name inside "
                          "the PNG folder"),
    "NUL in file name": (_set(["annotations", 0, "file_name"], "a\x00.png"),
                         "annotation of image 1: file_name 'a\\x00.png' contains the control character '\\x00'"),
    "newline in file name": (_set(["annotations", 1, "file_name"], "b\n.png"),
                             "annotation of image 2: file_name 'b\\n.png' contains the control character '\\n'"),
    "no file_name": (lambda d: d["annotations"][0].pop("file_name"), "annotations[0] lacks key(s) file_name"),
    "no segments_info": (lambda d: d["annotations"][1].pop("segments_info"),
                         "annotations[1] lacks key(s) segments_info"),
}


@pytest.mark.parametrize("case", sorted(SUBMISSION_CASES))
def test_package_submission_refuses_bad_file_names_and_missing_keys(tmp_path, capsys, case):
    change, message = SUBMISSION_CASES[case]
    json_path, png_dir = make_set(tmp_path)
    edit_json(json_path, change)
    line = _refused_submission(capsys, json_path, png_dir, tmp_path)
    assert line == f"spatialflow package-submission: error: {json_path}: {message}"


NAME_FIELD_RULE = ("is not a name for the upload's files; use 1 to 100 letters, digits and '-', starting with a "
                   "letter or digit (no '_', which separates the fields, no '.', '/' or control characters)")


@pytest.mark.parametrize(("option", "value", "shown"), [
    ("--split", "x/../../../escaped", "'x/../../../escaped'"),
    ("--split", "..", "'..'"),
    ("--split", "test_dev", "'test_dev'"),
    ("--method", "m\n", "'m\\n'"),
    ("--method", "m\x00", "'m\\x00'"),
    ("--method", "m.v1", "'m.v1'"),
    ("--method", "", "''"),
])
def test_package_submission_refuses_method_and_split_that_are_not_file_name_fields(tmp_path, capsys, option, value,
                                                                                      shown):
    json_path, png_dir = make_set(tmp_path / "set")
    out = tmp_path / "a" / "b" / "out"
    argv = ["package-submission", "--pred-json", str(json_path), "--pred-dir", str(png_dir), "--method", "m",
            "--out-dir", str(out), option, value]
    line = _argparse_line(capsys, argv)
    assert line == (f"spatialflow package-submission: error: argument {option}: {shown} {NAME_FIELD_RULE} "
                    "(see spatialflow package-submission --help)")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["set", "set/pan", "set/pan.json",
                                                                                "set/pan/a.png", "set/pan/b.png"]


def test_package_submission_function_refuses_a_split_that_leaves_the_output_folder(tmp_path):
    json_path, png_dir = make_set(tmp_path / "set")
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(ConfigError, match=r"^split 'x/\.\./\.\./\.\./escaped' is not a name"):
        package_submission(json_path, png_dir, out, "m", split="x/../../../escaped")
    with pytest.raises(ConfigError, match=r"^method 'm\\n' is not a name"):
        package_submission(json_path, png_dir, out, "m\n")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob("*escaped*"))


def test_package_submission_verifies_its_zip(tmp_path, capsys):
    json_path, png_dir = make_set(tmp_path)
    assert main(["package-submission", "--pred-json", str(json_path), "--pred-dir", str(png_dir),
                 "--method", "m", "--out-dir", str(tmp_path / "up")]) == 0
    name = "panoptic_test-dev2017_m_results"
    zip_path = tmp_path / "up" / f"{name}.zip"
    annotations = json.loads(json_path.read_text())["annotations"]
    verify_zip(zip_path, name, annotations)  # the good one passes
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr("../evil.png", b"x")
    with pytest.raises(DataError, match=r"\.zip: written zip has 4 entries \(\['\.\./evil\.png'\] outside"):
        verify_zip(zip_path, name, annotations)


# --------------------------------------------------------------------------------------- CLI one-liners


def _argparse_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return _one_line(capsys, " ".join(argv[:2]) if argv[0] == "bench" else argv[0])


def test_cli_arguments_out_of_range_or_of_the_wrong_kind_are_one_line(tmp_path, capsys):
    json_path, png_dir = make_set(tmp_path)
    a_file = png_dir / "a.png"
    evaluate = ["evaluate", "--gt-json", str(json_path), "--gt-dir", str(png_dir),
                "--pred-json", str(json_path), "--pred-dir", str(png_dir)]
    cases = [
        (["evaluate", "--gt-json", str(json_path), "--gt-dir", str(a_file)], f"argument --gt-dir: {a_file}: is a file"),
        ([*evaluate, "--json-out", str(tmp_path)], f"argument --json-out: {tmp_path}: is a folder"),
        ([*evaluate, "--workers", "0"], "argument --workers: 0 is out of range; expected an integer >= 1"),
        (["evaluate", "--gt-json", str(png_dir)], f"argument --gt-json: {png_dir}: is a folder; expected a file"),
        (["predict", "--checkpoint", str(a_file), "--images", str(png_dir), "--out", str(tmp_path / "o"),
          "--batch-size", "0"], "argument --batch-size: 0 is out of range; expected an integer >= 1"),
        (["predict", "--checkpoint", str(a_file), "--images", str(png_dir), "--out", str(a_file)],
         f"argument --out: {a_file}: is a file; expected a folder"),
        (["predict", "--checkpoint", str(a_file), "--images", str(png_dir), "--out", str(tmp_path / "o"),
          "--batch-size", "two"], "argument --batch-size: 'two' is not an integer"),
        (["package-submission", "--pred-json", str(json_path), "--pred-dir", str(png_dir), "--method", "m",
          "--out-dir", str(a_file)], f"argument --out-dir: {a_file}: is a file"),
        (["validate-data", "--json", str(json_path), "--png-dir", str(tmp_path / "nope")],
         f"argument --png-dir: {tmp_path / 'nope'}: folder not found"),
        (["clean-replaced", str(tmp_path / "nope")], f"argument root: {tmp_path / 'nope'}: folder not found"),
        (["clean-replaced", str(a_file)], f"argument root: {a_file}: is a file; expected a folder"),
        (["bench", "pq", "--size", "abc"], "argument --size: 'abc' is not a size; expected HxW (e.g. 128x128)"),
        (["bench", "pq", "--size", "0x64"], "argument --size: 0x64 is out of range; expected HxW with both sides in "
                                            "[8, 8192]"),
        (["bench", "pq", "--images", "0"], "argument --images: 0 is out of range; expected an integer >= 1"),
        (["generate-synthetic", "--out", str(tmp_path / "syn"), "--size", "100000x100000"],
         "argument --size: 100000x100000 is out of range; expected HxW with both sides in [32, 4096]"),
        (["generate-synthetic", "--out", str(tmp_path / "syn"), "--size", "64"],
         "argument --size: '64' is not a size; expected HxW (e.g. 128x128)"),
        (["generate-synthetic", "--out", str(tmp_path / "syn"), "--num-train", "-3"],
         "argument --num-train: -3 is out of range; expected an integer >= 1"),
        (["generate-synthetic", "--out", str(tmp_path / "syn"), "--num-test", "0"],
         "argument --num-test: 0 is out of range; expected an integer >= 1"),
    ]
    for argv, message in cases:
        line = _argparse_line(capsys, argv)
        assert message in line, (argv, line)
    assert not (tmp_path / "syn").exists()


# ----------------------------------------------------------------------------------------- checkpoints


def _corrupt_tensor_bytes(path: Path, marker: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(marker * 64)
    assert at > 0
    data[at:at + 4096] = bytes(4096)  # 4 KB of the tensor's bytes, as in the probe
    path.write_bytes(bytes(data))


def _state(i: int) -> dict:
    return {"iteration": i, "model": {"w": torch.full((4096,), 1.5), "b": torch.arange(3)}, "config": {"i": i}}


def test_flipped_tensor_bytes_are_reported_like_a_truncated_file(tmp_path):
    for i in (10, 20):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, i), _state(i))
    latest = ckpt.checkpoint_path(tmp_path, 20)
    _corrupt_tensor_bytes(latest, struct.pack("<f", 1.5))
    with pytest.raises(CheckpointError, match=r"checkpoint_00000020\.pt: corrupt checkpoint"):
        ckpt.load_checkpoint(latest)
    with pytest.warns(UserWarning, match=r"checkpoint_00000020\.pt: corrupt checkpoint.*falling back"):
        path, state = ckpt.load_latest_checkpoint(tmp_path)
    assert path.name == "checkpoint_00000010.pt" and "sha256" not in state
    assert torch.equal(state["model"]["w"], torch.full((4096,), 1.5))


def test_predict_on_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "model_final.pt"
    ckpt.save_checkpoint(path, _state(1))
    _corrupt_tensor_bytes(path, struct.pack("<f", 1.5))
    images = tmp_path / "images"
    images.mkdir()
    assert main(["predict", "--checkpoint", str(path), "--images", str(images), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert _one_line(capsys, "predict").endswith(f"{path}: corrupt checkpoint (its content does not match the "
                                                 "stored sha256)")


def _predict_line(capsys, tmp_path, checkpoint, device: str = "cpu") -> str:
    """predict on ``checkpoint`` exits 2 with one line (returned)."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(images), "--out", str(tmp_path / "o"),
                 "--device", device]) == 2
    return _one_line(capsys, "predict")


class _Payload:  # what torch.load(weights_only=False) would construct from the pickle
    pass


def test_predict_refuses_what_is_not_a_checkpoint_of_ours_in_one_line(tmp_path, capsys):
    no_digest = tmp_path / "no_digest.pt"
    ckpt.save_checkpoint(no_digest, _state(1))
    state = torch.load(no_digest, weights_only=True)
    del state["sha256"]
    state["model"]["w"].zero_()
    torch.save(state, no_digest)
    assert _predict_line(capsys, tmp_path, no_digest) == (
        f"spatialflow predict: error: {no_digest}: has no sha256 digest (not written by spatialflow, or edited); "
        "refused")
    older = tmp_path / "older.pt"
    torch.save({"format": 1, "iteration": 3, "model": {"w": torch.ones(2)}}, older)  # before the digest
    assert _predict_line(capsys, tmp_path, older).endswith(f"{older}: checkpoint format 1 is older than this "
                                                          "code's (2): its digest does not cover every value; "
                                                          "retrain it")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {}, "payload": _Payload()}, pickled)
    assert _predict_line(capsys, tmp_path, pickled).endswith(
        f"{pickled}: refused: it holds Python objects (test_hardening_inputs._Payload) that only an unsafe load "
        "would construct or run; checkpoints are loaded with weights_only=True and never unpickled")
    assert _predict_line(capsys, tmp_path, "/dev/zero") == (
        "spatialflow predict: error: /dev/zero: not a regular file (a device, pipe or socket); expected a "
        "checkpoint file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_one_line(tmp_path, capsys):
    path = tmp_path / "model_final.pt"
    ckpt.save_checkpoint(path, _state(1))
    assert _predict_line(capsys, tmp_path, path, device="cuda") == (
        "spatialflow predict: error: --device: 'cuda', but no CUDA device is available on this machine; use "
        "'auto' or 'cpu'")
    config = tmp_path / "row.yaml"
    config.write_text(json.dumps({"model": {"preset": "baseline"}, "output_dir": str(tmp_path / "run"),
                                  "run": {"device": "cuda"}}))
    assert main(["train", "--config", str(config)]) == 2
    assert _one_line(capsys, "train") == ("spatialflow train: error: run.device: 'cuda', but no CUDA device is "
                                          "available on this machine; use 'auto' or 'cpu'")
    assert not (tmp_path / "run" / "identity.json").exists()


def test_an_empty_or_non_utf8_run_folder_or_name_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the current folder
    config = tmp_path / "row.yaml"
    for change, message in (
        ({"output_dir": ""}, "output_dir: is empty; give the run's own folder, e.g. outputs/run"),
        ({"output_dir": "."}, "output_dir: '.' names no folder of its own; give the run's own folder, e.g. "
                              "outputs/run"),
        ({"name": "row\ud800"}, "name: not valid UTF-8 text ('\\ud800' at position 3); file names and text in a "
                                 "config must be UTF-8"),
    ):
        config.write_text(json.dumps({"model": {"preset": "baseline"}, "output_dir": "run", **change}))
        assert main(["train", "--config", str(config), "--replace"]) == 2
        assert _one_line(capsys, "train") == f"spatialflow train: error: {config}: {message}"
    config.write_text(json.dumps({"model": {"preset": "baseline"}, "output_dir": "run"}))
    for folder, message in (("", "is empty; give the run's own folder"),
                            ("run/\udcff", "'run/\\udcff' is not valid UTF-8; file names in a config must be UTF-8")):
        line = _argparse_line(capsys, ["train", "--config", str(config), "--output-dir", folder, "--replace"])
        assert f"argument --output-dir: {message}" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["row.yaml"]


def test_digest_does_not_depend_on_key_order_or_device_copy():
    a = {"model": {"x": torch.ones(2), "y": torch.zeros(3, dtype=torch.bfloat16)}, "rng": [torch.arange(4)]}
    b = {"rng": [torch.arange(4)], "model": {"y": torch.zeros(3, dtype=torch.bfloat16), "x": torch.ones(2)}}
    assert ckpt.state_digest(a) == ckpt.state_digest(b)
    b["model"]["x"] = torch.tensor([1.0, 1.0 + 2**-20])
    assert ckpt.state_digest(a) != ckpt.state_digest(b)


def test_temp_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    stale = [tmp_path / ".checkpoint_00000010.pt.k1ll3d00.tmp", tmp_path / ".model_final.pt.abcd1234.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = tmp_path / ".other.json.abcd.tmp"  # not a checkpoint's temp file: left alone
    keep.write_text("{}")
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 20), _state(20))
    assert not stale[0].exists() and keep.exists()
    ckpt.save_checkpoint(tmp_path / "model_final.pt", _state(20))
    assert not stale[1].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abcd.tmp", "checkpoint_00000020.pt",
                                                         "model_final.pt"]


# ----------------------------------------------------------------------------------------- file modes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_outputs_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
        ckpt.save_checkpoint(tmp_path / "c.pt", _state(1))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_submission_zip_is_readable_by_the_group_and_others(tmp_path, capsys):
    json_path, png_dir = make_set(tmp_path)
    old = os.umask(0o022)
    try:
        assert main(["package-submission", "--pred-json", str(json_path), "--pred-dir", str(png_dir),
                     "--method", "m", "--out-dir", str(tmp_path / "up")]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "up").iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path
    shutil.rmtree(tmp_path / "up")


# ------------------------------------------------------------------- the pipeline layer (kedro run, make repro)
# A user error in any DVC stage (`kedro run ...`) is one line `<stage>: error: <message>` on stderr and exit
# status 2; params.yaml is checked (strictly read, whole grid) before any pipeline is built.

BILLION_LAUGHS = "\n".join(['lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"lol{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)])


@pytest.fixture(scope="module")
def pipeline_project(tmp_path_factory, repo_root):
    """A copy of the project (micro grid of the end-to-end test), no data: what each test runs in."""
    import sys

    import yaml

    from helpers.micro_project import copy_project, micro_params

    project = tmp_path_factory.mktemp("pipeline") / "project"
    copy_project(repo_root, project)
    params = micro_params(yaml.safe_load((repo_root / "params.yaml").read_text()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(project / "src"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{project.parent / 'mlflow.db'}", "COLUMNS": "200"}
    env.pop("DVC_STAGE", None)
    return {"project": project, "params": params, "env": env}


def _run_in(project: dict, command: list[str], params_text: str, **env) -> tuple[int, list[str], str]:
    """Write params.yaml, run ``command`` in the project; (status, stderr lines, stdout)."""
    import subprocess

    (project["project"] / "params.yaml").write_text(params_text)
    done = subprocess.run(command, cwd=project["project"], env={**project["env"], **env}, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()], done.stdout


def _edited(project: dict, change) -> str:
    import copy

    import yaml

    params = copy.deepcopy(project["params"])
    change(params)
    return yaml.safe_dump(params, sort_keys=False)


def test_a_row_named_with_an_absolute_path_is_refused_and_nothing_is_written(pipeline_project, tmp_path):
    evil = str(tmp_path / "evil")
    text = _edited(pipeline_project, lambda p: p["search_rows"].update({evil: p["search_rows"]["t1_lambda_0_25"]}))
    status, err, out = _run_in(pipeline_project, ["kedro", "run", "--env", "repro", "--pipelines", "stuff_loss_weight",
                                                  "--namespaces", "coco"], text, DVC_STAGE="search_stuff_loss_weight")
    assert status == 2 and "Traceback" not in out
    assert err == [f"search_stuff_loss_weight: error: params.yaml: search_rows.{evil}: bad row name {evil!r}: only lower-case "
                   "letters, digits and '_' (it becomes a path, a DVC stage and a Kedro namespace)"]
    assert list(tmp_path.iterdir()) == []


def test_a_bad_row_is_one_line_for_make_repro_and_for_the_stage(pipeline_project):
    text = _edited(pipeline_project, lambda p: p["rows"]["t2_baseline"].update(preset="nope"))
    problem = ("params.yaml: rows.t2_baseline.preset: unknown model preset 'nope'; choose one of ['+reg_cls', "
               "'+reg_mask', '+reg_stuff', '+subnets', 'baseline', 'spatialflow', 'spatialflow_dcn']")
    import sys

    status, err, _ = _run_in(pipeline_project, [sys.executable, "-m", "spatialflow_repro", "check-params"], text)
    assert (status, err) == (2, [f"check-params: error: {problem}"])
    status, err, out = _run_in(pipeline_project, ["kedro", "run", "--env", "repro", "--pipelines", "data_prep"],
                               text, DVC_STAGE="prepare_data")
    assert (status, err) == (2, [f"prepare_data: error: {problem}"]) and "Traceback" not in out


def test_an_alias_bomb_is_one_line_before_dvc_or_kedro_expand_it(pipeline_project):
    import sys

    text = _edited(pipeline_project, lambda p: None) + BILLION_LAUGHS + "\n"
    status, err, _ = _run_in(pipeline_project, [sys.executable, "-m", "spatialflow_repro", "check-params"], text)
    assert (status, err) == (2, ["check-params: error: params.yaml: its aliases expand to more than 200000 nodes "
                                 "(an alias bomb?); refused"])
    status, err, _ = _run_in(pipeline_project, ["kedro", "run", "--env", "repro", "--pipelines", "data_prep"], text)
    assert status == 2 and len(err) == 1 and err[0].endswith("its aliases expand to more than 200000 nodes "
                                                             "(an alias bomb?); refused")
    makefile = (pipeline_project["project"] / "Makefile").read_text()
    recipe = makefile.split("\nrepro:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("python -m spatialflow_repro check-params") < recipe.index("dvc repro")


def test_a_stage_failing_on_missing_data_prints_one_line_and_no_warning(pipeline_project):
    """`profile: coco` without the COCO files: the data stage's DataError, nothing else on stderr, no
    traceback and no deprecation or dataset-name warning in the log."""
    import sys

    def coco(params: dict) -> None:
        params["profile"] = "coco"
        params["profiles"]["coco"]["training"]["row_overrides"] = {}  # Table 6's row is not in the micro grid

    text = _edited(pipeline_project, coco)
    for command in (["kedro", "run", "--env", "repro", "--pipelines", "data_prep"],
                    [sys.executable, "-m", "spatialflow_repro", "run", "--env", "repro", "--pipelines", "data_prep"]):
        status, err, out = _run_in(pipeline_project, command, text)
        assert status == 2
        assert err == ["data_prep: error: data/01_raw/coco/annotations/panoptic_train2017.json: missing (train split "
                       "of COCO; see README 'Real data' for the layout)"]
        assert "Traceback" not in out and "Warning" not in out and "failed with error" not in out


def test_a_bug_keeps_its_traceback_and_a_wrapped_user_error_is_one_line(monkeypatch):
    import click
    from click.testing import CliRunner

    from spatialflow_repro import cli

    def failing(error: Exception):
        return click.Command("run", params=cli.kedro_run.params, callback=lambda **kwargs: (_ for _ in ()).throw(error))

    monkeypatch.setattr(cli, "kedro_run", failing(RuntimeError("a bug")))
    result = CliRunner().invoke(cli.cli, ["run", "--pipelines", "train"])
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1  # re-raised: its traceback

    wrapped = RuntimeError("node failed")
    wrapped.__cause__ = DataError("data/x.json", "missing")
    monkeypatch.setattr(cli, "kedro_run", failing(wrapped))
    result = CliRunner().invoke(cli.cli, ["run", "--pipelines", "train"])
    assert result.exit_code == 2 and result.output.splitlines() == ["train: error: data/x.json: missing"]


def test_a_data_error_survives_the_trip_between_processes():
    """Parallel seeds and Kedro's ParallelRunner pickle a worker's exception: it must stay one DataError."""
    import pickle

    error = pickle.loads(pickle.dumps(DataError("data/x.json", "missing")))
    assert type(error) is DataError and (error.path, error.problem, str(error)) == ("data/x.json", "missing",
                                                                                    "data/x.json: missing")
