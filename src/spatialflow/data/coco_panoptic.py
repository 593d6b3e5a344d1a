"""COCO-panoptic format: reading ground truth (JSON + PNGs + images) and writing predictions.

Format: one JSON with ``images``, ``annotations`` (one per image: ``image_id``, ``file_name`` of the PNG,
``segments_info`` = [{id, category_id, area, bbox [x, y, w, h], iscrowd}]) and ``categories`` (with
``isthing``); one RGB PNG per image whose pixel colour encodes the segment id (``R + 256 G + 256^2 B``,
0 = void). Every problem raises :class:`DataError` naming the offending file.
"""

from __future__ import annotations

import functools
import json
import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from spatialflow.data.categories import IGNORE_INDEX, CategoryMap
from spatialflow.data.panoptic_ids import VOID_ID, id2rgb, read_segment_ids
from spatialflow.errors import DataError
from spatialflow.utils.atomic import atomic_save_image, atomic_write_json
from spatialflow.utils.inputs import read_input_bytes

REQUIRED_TOP_KEYS = ("images", "annotations", "categories")
REQUIRED_IMAGE_KEYS = ("id", "file_name", "height", "width")
REQUIRED_ANNOTATION_KEYS = ("image_id", "file_name", "segments_info")
REQUIRED_SEGMENT_KEYS = ("id", "category_id", "area", "bbox", "iscrowd")
REQUIRED_CATEGORY_KEYS = ("id", "name", "isthing")


@dataclass(frozen=True)
class SplitPaths:
    """Where one split of a COCO-panoptic data set lives."""

    json_path: Path
    png_dir: Path
    image_dir: Path | None


# ----------------------------------------------------------------------------------------------- JSON


#: Required keys of each kind of COCO-panoptic JSON. ``dataset``: a training / validation set
#: (validate-data, the reader); ``gt``: evaluate's ground truth; ``pred``: evaluate's prediction;
#: ``submission``: package-submission's prediction. Keys that are not required are still type-checked.
_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "dataset": {"top": REQUIRED_TOP_KEYS, "segment": REQUIRED_SEGMENT_KEYS},
    "gt": {"top": REQUIRED_TOP_KEYS, "segment": ("id", "category_id")},
    "pred": {"top": ("annotations",), "segment": ("id", "category_id")},
    "submission": {"top": ("annotations", "categories"), "segment": ("id", "category_id")},
}
_ID_LIMIT = 256**3


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite JSON number (Python's json reads NaN, Infinity and 1e999 as floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a name (category, file): a control character or a lone surrogate (None if it can).

    A control character (newline, NUL, ...) breaks one-line messages, file names and zip entries; a lone
    surrogate (a JSON escape such as ``\\udcff``) is not Unicode text and cannot be written as UTF-8.
    """
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"contains the control character {char!r}"
        if "\ud800" <= char <= "\udfff":
            return f"contains {char!r}, which is not UTF-8 text (a lone surrogate)"
    return None


#: key -> (test, what was expected): the same type rules for every kind of JSON.
_TYPES: dict[str, dict[str, tuple]] = {
    "image": {
        "id": (lambda v: _is_int(v) or isinstance(v, str), "an integer or string id"),
        "file_name": (lambda v: isinstance(v, str) and v != "", "a file name (string)"),
        "height": (lambda v: _is_int(v) and v > 0, "a positive integer"),
        "width": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    },
    "annotation": {
        "image_id": (lambda v: _is_int(v) or isinstance(v, str), "an integer or string image id"),
        "file_name": (lambda v: isinstance(v, str) and v != "", "a PNG file name (string)"),
        "segments_info": (lambda v: isinstance(v, list), "a list of segments"),
    },
    "segment": {
        "id": (lambda v: _is_int(v) and 0 <= v < _ID_LIMIT, "an integer in [0, 256**3)"),
        "category_id": (_is_int, "an integer category id"),
        "area": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
        "bbox": (lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) and x >= 0 for x in v),
                 "[x, y, width, height], finite numbers >= 0"),
        "iscrowd": (lambda v: v in (0, 1) and not isinstance(v, float), "0 or 1"),
    },
    "category": {
        "id": (_is_int, "an integer"),
        "name": (lambda v: isinstance(v, str) and text_problem(v) is None,
                 "UTF-8 text without control characters"),
        "isthing": (lambda v: v in (0, 1) and not isinstance(v, float), "0 or 1"),
    },
}


def _shown(value: object) -> str:
    """A JSON value as the user wrote it, cut short, with its JSON type."""
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    try:
        text = json.dumps(value)
    except RecursionError:  # a value nested almost as deeply as the parser allows
        text = "[[[..." if isinstance(value, list) else "{..."
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({kind})"


def _item_problem(item: object, where: str, group: str, required: tuple[str, ...]) -> str | None:
    """The first missing key or wrong type of one item (keys checked for presence, then types)."""
    if not isinstance(item, dict):
        return f"{where} is {_shown(item)}; expected an object"
    missing = [k for k in required if k not in item]
    if missing:
        return f"{where} lacks key(s) {', '.join(missing)}"
    for key, (test, expected) in _TYPES[group].items():
        if key in item and not test(item[key]):
            return f"{where}.{key} is {_shown(item[key])}; expected {expected}"
    return None


def file_name_problem(file_name: str, folder: str = "PNG folder") -> str | None:
    """Why a JSON ``file_name`` cannot name a file inside its folder (None if it can).

    The one file-name check of the JSON readers: an annotation's PNG inside the PNG folder, an image inside
    the image folder, a submission's PNG inside the upload zip.
    """
    problem = text_problem(file_name)
    if problem:
        return problem
    if file_name.startswith(("/", "\\")) or os.path.isabs(file_name) or (len(file_name) > 1 and file_name[1] == ":"):
        return f"is an absolute path; expected a name relative to the {folder}"
    if ".." in file_name.replace("\\", "/").split("/"):
        return f"contains '..'; expected a name inside the {folder}"
    return None


@dataclass
class PanopticIndex:
    """The well-formed part of a checked COCO-panoptic JSON (items with a problem are left out)."""

    images: dict  # image id -> image entry
    annotations: list[dict]  # annotations whose keys, types and segments are all well-formed
    category_ids: set


def check_panoptic_json(data: object, path: str | os.PathLike, kind: str = "dataset",
                        nonempty: bool = False) -> tuple[list[DataError], PanopticIndex]:
    """Every problem of a parsed COCO-panoptic JSON (types before values) and its well-formed part.

    The one JSON check of validate-data, evaluate, package-submission and the reader; ``kind`` only
    changes which keys are required (see ``_KINDS``). ``nonempty``: a JSON without annotations is a problem.
    """
    required = _KINDS[kind]
    index = PanopticIndex({}, [], set())
    if not isinstance(data, dict):
        return [DataError(path, f"top level is {_shown(data)}; expected a JSON object")], index
    problems = [DataError(path, f"missing top-level key '{key}'") for key in required["top"] if key not in data]
    for key in REQUIRED_TOP_KEYS:
        if key in data and not isinstance(data[key], list):
            problems.append(DataError(path, f"'{key}' is {_shown(data[key])}; expected a list"))
    if problems:
        return problems, index

    def well_formed(name: str, group: str, keys: tuple[str, ...]) -> list[dict]:
        good = []
        for i, item in enumerate(data.get(name, [])):
            problem = _item_problem(item, f"{name}[{i}]", group, keys)
            if problem:
                problems.append(DataError(path, problem))
            else:
                good.append(item)
        return good

    def bad_file_name(item: dict, where: str, folder: str) -> bool:
        problem = file_name_problem(item["file_name"], folder)
        if problem:
            problems.append(DataError(path, f"{where}: file_name {item['file_name']!r} {problem}"))
        return problem is not None

    categories = well_formed("categories", "category", REQUIRED_CATEGORY_KEYS)
    images = [image for image in well_formed("images", "image", REQUIRED_IMAGE_KEYS)
              if not bad_file_name(image, f"image {image['id']!r}", "image folder")]
    annotations = []
    for ann in well_formed("annotations", "annotation", REQUIRED_ANNOTATION_KEYS):
        if bad_file_name(ann, f"annotation of image {ann['image_id']!r}", "PNG folder"):
            continue
        bad = [_item_problem(seg, f"image {ann['image_id']!r} segments_info[{j}]", "segment", required["segment"])
               for j, seg in enumerate(ann["segments_info"])]
        bad = [b for b in bad if b]
        problems.extend(DataError(path, b) for b in bad)
        if not bad:
            annotations.append(ann)
    if nonempty and not data["annotations"]:
        problems.append(DataError(path, "has no annotations; expected at least one annotated image"))

    unique = [("category", categories, "id"), ("image", images, "id"), ("annotation image_id", annotations, "image_id")]
    if kind != "pred":  # evaluate reads each prediction PNG by itself; a dataset or an upload needs one per image
        unique.append(("annotation file_name", annotations, "file_name"))
    for name, items, key in unique:
        seen: set = set()
        for item in items:
            if item[key] in seen:
                problems.append(DataError(path, f"duplicate {name} {item[key]!r}"))
            seen.add(item[key])

    image_ids = {img["id"] for img in images}
    if "images" in data and kind != "pred":  # for evaluate, the GT (not the prediction's own list) is the reference
        bad_ids = {img.get("id") for img in data["images"]
                   if isinstance(img, dict) and isinstance(img.get("id"), (int, str))} - image_ids
        for ann in annotations:
            if ann["image_id"] not in image_ids and ann["image_id"] not in bad_ids:
                problems.append(DataError(path, f"annotation for unknown image_id {ann['image_id']!r}"))
    annotated = {ann.get("image_id") for ann in data["annotations"]
                 if isinstance(ann, dict) and isinstance(ann.get("image_id"), (int, str))}
    if kind in ("dataset", "gt"):
        for img in images:
            if img["id"] not in annotated:
                problems.append(DataError(path, f"image {img['id']!r} ({img['file_name']}) has no annotation"))
    index.images = {img["id"]: img for img in images}
    index.annotations = annotations
    index.category_ids = {c["id"] for c in categories}
    return problems, index


def one_line_per_file(problems: list[DataError]) -> list[DataError]:
    """At most one problem per file (its first), saying how many more that file has."""
    by_path: dict[str, list[DataError]] = {}
    for problem in problems:
        by_path.setdefault(problem.path, []).append(problem)
    lines = []
    for path, found in by_path.items():
        more = len(found) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''} in this file)" if more else ""
        lines.append(DataError(path, found[0].problem + suffix))
    return lines


def raise_first(problems: list[DataError]) -> None:
    """Raise the first file's one-line problem (the message validate-data prints for that file)."""
    if problems:
        raise one_line_per_file(problems)[0]


def size_problem(png_path: str | os.PathLike, shape: tuple[int, ...], info: dict) -> DataError | None:
    """The PNG's (H, W) against the JSON's height / width of its image (None when they agree)."""
    if tuple(shape) == (info["height"], info["width"]):
        return None
    return DataError(png_path, f"PNG is {shape[0]}x{shape[1]} (HxW), the JSON says "
                               f"{info['height']}x{info['width']} for image {info['id']!r}")


def read_json(path: str | os.PathLike) -> object:
    """Parse a JSON file; DataError if it is missing, not UTF-8, does not parse or is nested too deeply.

    The one JSON reader of the package's data files (COCO-panoptic sets, predictions, image lists).
    """
    raw = read_input_bytes(path, "JSON file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                              "expected a UTF-8 JSON file") from None
    try:
        return json.loads(text)
    except RecursionError:  # the C parser recurses once per nested list / object
        raise DataError(path, "nested too deeply to parse; a COCO-panoptic JSON is at most a few levels deep") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise DataError(path, f"not valid JSON ({exc})") from None


def load_panoptic_json(path: str | os.PathLike, kind: str = "dataset", *, nonempty: bool = False) -> dict:
    """Parse a COCO-panoptic JSON and check it as ``kind`` (see ``_KINDS``); DataError on the first problem.

    The one reader of COCO-panoptic JSONs (data sets, evaluate's ground truth and prediction, the upload);
    validate-data alone uses ``read_json`` + ``check_panoptic_json`` itself, to list every problem.
    ``nonempty``: a JSON without annotations is a problem.
    """
    data = read_json(path)
    raise_first(check_panoptic_json(data, path, kind, nonempty)[0])
    return data  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- PNG ids


def read_panoptic_png(path: str | os.PathLike, image_info: dict | None = None) -> np.ndarray:
    """Read a panoptic PNG -> (H, W) int64 segment ids; DataError if missing, corrupt or not 8-bit RGB, or
    (with ``image_info``, the JSON's image entry) if its header's size is not the JSON's height x width.

    The same reader (and the same messages) as evaluate and package-submission: ``ids.read_segment_ids``.
    """
    return read_segment_ids(path, size_check_of(image_info)).astype(np.int64, copy=False)


def size_check_of(image_info: dict | None):
    """The ``size_check`` of ``ids.read_segment_ids`` for an image entry of the JSON (None: no check)."""
    return None if image_info is None else functools.partial(size_problem, info=image_info)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 RGB; DataError if missing or corrupt."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except Exception as exc:
        raise DataError(path, f"cannot read image ({exc})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) from the file header only; DataError if missing or unreadable."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except Exception as exc:
        raise DataError(path, f"cannot read image ({exc})") from None
    return height, width


def image_size_problem(image_path: str | os.PathLike, info: dict) -> DataError | None:
    """The image file's header size against the JSON's height / width of its image (None when they agree)."""
    height, width = image_size(image_path)
    if (height, width) == (info["height"], info["width"]):
        return None
    return DataError(image_path, f"image is {height}x{width} (HxW), the JSON says {info['height']}x{info['width']}")


def segment_stats(panoptic_ids: np.ndarray) -> dict[int, tuple[int, list[int]]]:
    """Every non-void segment id in the map -> (area, COCO bbox [x, y, w, h]) in integers."""
    ids, inverse, counts = np.unique(panoptic_ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(panoptic_ids.shape)
    stats: dict[int, tuple[int, list[int]]] = {}
    for k, (segment_id, area) in enumerate(zip(ids.tolist(), counts.tolist())):
        if segment_id == VOID_ID:
            continue
        mask = inverse == k
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        x, y = int(cols[0]), int(rows[0])
        stats[segment_id] = (int(area), [x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1])
    return stats


def segment_problems(
    panoptic_ids: np.ndarray,
    segments: list[dict],
    category_ids: set[int],
    png_path: str | os.PathLike,
    check_area_bbox: bool = True,
) -> list[DataError]:
    """Disagreements between a panoptic PNG and its ``segments_info``."""
    problems: list[DataError] = []
    stats = segment_stats(panoptic_ids)
    seen: set[int] = set()
    for seg in segments:
        sid = seg["id"]
        if sid in seen:
            problems.append(DataError(png_path, f"duplicate segment id {sid} in segments_info"))
            continue
        seen.add(sid)
        if seg["category_id"] not in category_ids:
            problems.append(DataError(png_path, f"segment {sid} has unknown category_id {seg['category_id']}"))
        if sid not in stats:
            problems.append(DataError(png_path, f"segment {sid} is in segments_info but not in the PNG"))
            continue
        if not check_area_bbox:
            continue
        area, bbox = stats[sid]
        if "area" in seg and seg["area"] != area:
            problems.append(DataError(png_path, f"segment {sid}: area {seg['area']} in JSON, {area} in PNG"))
        if "bbox" in seg and [round(v) for v in seg["bbox"]] != bbox:
            problems.append(DataError(png_path, f"segment {sid}: bbox {seg['bbox']} in JSON, {bbox} in PNG"))
    for sid in sorted(set(stats) - seen):
        problems.append(DataError(png_path, f"segment id {sid} is in the PNG but not in segments_info"))
    return problems


# ---------------------------------------------------------------------------------------------- reader


@dataclass
class PanopticSample:
    """One image with its panoptic ground truth, decoded for training."""

    image_id: int | str  # int for COCO and synthetic, '<city>_<seq>_<frame>' for Cityscapes
    file_name: str
    height: int
    width: int
    image: np.ndarray | None  # (H, W, 3) uint8 RGB, None without image_dir
    panoptic_ids: np.ndarray  # (H, W) int64 segment ids, 0 = void
    segments: list[dict]  # the JSON's segments_info
    boxes: np.ndarray  # (N, 4) float32 xyxy, x2 = x + w
    labels: np.ndarray  # (N,) int64 contiguous thing index
    masks: np.ndarray  # (N, H, W) bool
    iscrowd: np.ndarray  # (N,) bool
    stuff_map: np.ndarray  # (H, W) int64: stuff 0..S-1, other = S, void = 255


def decode_targets(
    panoptic_ids: np.ndarray, segments: list[dict], categories: CategoryMap
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment map + segments_info -> (boxes, labels, masks, iscrowd, stuff_map) in contiguous ids.

    Thing segments (crowd included) become instances and 'other' in the stuff map; stuff segments
    their stuff index; void and unlisted pixels 255.
    """
    height, width = panoptic_ids.shape
    stuff_map = np.full((height, width), IGNORE_INDEX, dtype=np.int64)
    boxes, labels, masks, iscrowd = [], [], [], []
    for seg in segments:
        mask = panoptic_ids == seg["id"]
        if categories.is_thing(seg["category_id"]):
            stuff_map[mask] = categories.other_index
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                continue  # only reachable with check_area_bbox off; an empty instance has no box
            boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            labels.append(categories.contiguous(seg["category_id"]))
            masks.append(mask)
            iscrowd.append(bool(seg.get("iscrowd", 0)))
        else:
            stuff_map[mask] = categories.contiguous(seg["category_id"])
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool),
        np.asarray(iscrowd, dtype=bool),
        stuff_map,
    )


class CocoPanoptic:
    """Random-access reader of a COCO-panoptic data set (JSON + PNG folder + optional image folder)."""

    def __init__(
        self,
        json_path: str | os.PathLike,
        png_dir: str | os.PathLike,
        image_dir: str | os.PathLike | None = None,
    ) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        data = load_panoptic_json(self.json_path)
        try:
            self.categories = CategoryMap.from_categories(data["categories"])
        except ValueError as exc:
            raise DataError(self.json_path, str(exc)) from None
        self.images: list[dict] = data["images"]
        self._annotations = {ann["image_id"]: ann for ann in data["annotations"]}
        self._category_ids = {c["id"] for c in data["categories"]}

    def __len__(self) -> int:
        return len(self.images)

    def annotation(self, index: int) -> dict:
        """The JSON annotation (file_name, segments_info) of image ``index``."""
        return self._annotations[self.images[index]["id"]]

    def __getitem__(self, index: int) -> PanopticSample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        info = self.images[index]
        ann = self.annotation(index)
        png_path = self.png_dir / ann["file_name"]
        panoptic_ids = read_panoptic_png(png_path, info)
        size = (int(info["height"]), int(info["width"]))
        raise_first(segment_problems(panoptic_ids, ann["segments_info"], self._category_ids, png_path))
        image = None
        if self.image_dir is not None:
            image_path = self.image_dir / info["file_name"]
            image_problem = image_size_problem(image_path, info)  # from the header, before decoding
            if image_problem is not None:
                raise image_problem
            image = read_image(image_path)
        boxes, labels, masks, iscrowd, stuff_map = decode_targets(
            panoptic_ids, ann["segments_info"], self.categories)
        return PanopticSample(
            image_id=info["id"], file_name=info["file_name"], height=size[0], width=size[1],
            image=image, panoptic_ids=panoptic_ids, segments=ann["segments_info"],
            boxes=boxes, labels=labels, masks=masks, iscrowd=iscrowd, stuff_map=stuff_map,
        )


# ---------------------------------------------------------------------------------------------- writer


class PanopticWriter:
    """Streams panoptic PNGs to ``png_dir``; ``close()`` writes the JSON. Every file is written atomically.

    Use as a context manager: the JSON is written when the block ends without an exception.
    """

    def __init__(self, png_dir: str | os.PathLike, json_path: str | os.PathLike, categories: list[dict]) -> None:
        self.png_dir = Path(png_dir)
        self.json_path = Path(json_path)
        self.categories = [dict(c) for c in categories]
        self._category_ids = {c["id"] for c in self.categories}
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(self, image_info: dict, panoptic_ids: np.ndarray, segments: list[dict]) -> None:
        """Write one image's PNG; area/bbox are computed from ``panoptic_ids``, iscrowd defaults to 0."""
        png_name = Path(image_info["file_name"]).stem + ".png"
        png_path = self.png_dir / png_name
        panoptic_ids = np.asarray(panoptic_ids)
        size = (int(image_info["height"]), int(image_info["width"]))
        if panoptic_ids.shape != size:
            raise DataError(png_path, f"segment map is {panoptic_ids.shape}, image_info says {size}")
        stats = segment_stats(panoptic_ids)
        segments_info = []
        for seg in segments:
            if seg["category_id"] not in self._category_ids:
                raise DataError(png_path, f"segment {seg['id']} has unknown category_id {seg['category_id']}")
            if seg["id"] not in stats:
                raise DataError(png_path, f"segment {seg['id']} has zero area")
            area, bbox = stats[seg["id"]]
            segments_info.append({"id": int(seg["id"]), "category_id": int(seg["category_id"]),
                                  "area": area, "bbox": bbox, "iscrowd": int(seg.get("iscrowd", 0))})
        unlisted = sorted(set(stats) - {s["id"] for s in segments_info})
        if unlisted:
            raise DataError(png_path, f"segment ids {unlisted} are in the map but not in segments")
        if len(segments_info) != len({s["id"] for s in segments_info}):
            raise DataError(png_path, "duplicate segment ids")
        atomic_save_image(png_path, Image.fromarray(id2rgb(panoptic_ids)))
        self.images.append({k: image_info[k] for k in ("id", "file_name", "height", "width")})
        self.annotations.append({"image_id": image_info["id"], "file_name": png_name,
                                 "segments_info": segments_info})

    def close(self) -> None:
        """Write the JSON (images, annotations, categories)."""
        atomic_write_json(self.json_path, {"images": self.images, "annotations": self.annotations,
                                           "categories": self.categories}, indent=None)

    def __enter__(self) -> PanopticWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
