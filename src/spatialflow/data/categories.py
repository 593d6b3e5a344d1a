"""Mapping between a dataset's category ids and the model's contiguous class indices.

Things and stuff are numbered separately, in the order of the dataset's ``categories`` list:

- thing classes ``0 .. K-1`` (cls head, mask head),
- stuff classes ``0 .. S-1`` (stuff head), plus ``S`` = 'other' (every thing pixel), and
- ``IGNORE_INDEX`` (255) for void / unlabeled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

IGNORE_INDEX = 255


@dataclass(frozen=True)
class CategoryMap:
    """Dataset categories (the COCO-panoptic ``categories`` list) and their contiguous indices."""

    categories: tuple[dict, ...]
    thing_ids: tuple[int, ...] = field(init=False)
    stuff_ids: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for cat in self.categories:
            if "id" not in cat or "isthing" not in cat:
                raise ValueError(f"category {cat!r} lacks 'id' or 'isthing'")
            if cat["id"] in seen:
                raise ValueError(f"duplicate category id {cat['id']}")
            seen.add(cat["id"])
        object.__setattr__(self, "thing_ids", tuple(c["id"] for c in self.categories if c["isthing"]))
        object.__setattr__(self, "stuff_ids", tuple(c["id"] for c in self.categories if not c["isthing"]))

    @classmethod
    def from_categories(cls, categories: list[dict]) -> CategoryMap:
        return cls(tuple(dict(c) for c in categories))

    @property
    def num_things(self) -> int:
        return len(self.thing_ids)

    @property
    def num_stuff(self) -> int:
        """Number of stuff classes, without 'other'."""
        return len(self.stuff_ids)

    @property
    def other_index(self) -> int:
        """Stuff-head index of the single 'other' class that covers all thing pixels."""
        return len(self.stuff_ids)

    def is_thing(self, category_id: int) -> bool:
        return category_id in self._thing_index

    def contiguous(self, category_id: int) -> int:
        """Dataset id -> contiguous index within things or within stuff."""
        if category_id in self._thing_index:
            return self._thing_index[category_id]
        if category_id in self._stuff_index:
            return self._stuff_index[category_id]
        raise KeyError(f"unknown category id {category_id}")

    def thing_category_id(self, index: int) -> int:
        return self.thing_ids[index]

    def stuff_category_id(self, index: int) -> int:
        return self.stuff_ids[index]

    def name(self, category_id: int) -> str:
        for cat in self.categories:
            if cat["id"] == category_id:
                return str(cat.get("name", category_id))
        raise KeyError(f"unknown category id {category_id}")

    @cached_property
    def _thing_index(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.thing_ids)}

    @cached_property
    def _stuff_index(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.stuff_ids)}
