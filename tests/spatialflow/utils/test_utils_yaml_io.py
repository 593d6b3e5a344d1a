"""Strict YAML reading: duplicate keys, alias bombs and absurd nesting are one line naming the file."""

from __future__ import annotations

import time

import pytest

from spatialflow.errors import ConfigError
from spatialflow.utils.yaml_io import MAX_EXPANDED_NODES, parse_yaml, read_yaml


def test_a_key_given_twice_names_both_lines():
    with pytest.raises(ConfigError, match=r"^c\.yaml: line 3: key 'lr' given twice in one mapping \(first on line 2\)"):
        parse_yaml("train:\n  lr: 0.1\n  lr: 0.2\n", "c.yaml")


def test_the_same_key_in_two_mappings_and_merge_keys_are_fine():
    text = "base: &b {lr: 0.1, batch: 4}\nrow:\n  <<: *b\n  lr: 0.2\nother: {lr: 0.3}\n"
    assert parse_yaml(text, "p.yaml") == {"base": {"lr": 0.1, "batch": 4}, "row": {"lr": 0.2, "batch": 4},
                                          "other": {"lr": 0.3}}


def test_billion_laughs_is_refused_quickly():
    text, previous = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n', "a"
    for name in "bcdefghi":  # 9 ** 9 strings once expanded
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        previous = name
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"^p\.yaml: its aliases expand to more than {MAX_EXPANDED_NODES} nodes"):
        parse_yaml(text, "p.yaml")
    assert time.perf_counter() - start < 5


def test_deep_nesting_is_one_line_not_a_recursion_error():
    with pytest.raises(ConfigError, match=r"^d\.yaml: nested more than 64 levels deep"):
        parse_yaml("[" * 100_000 + "]" * 100_000, "d.yaml")


def test_syntax_error_names_line_and_column():
    with pytest.raises(ConfigError, match=r"^s\.yaml: not valid YAML \(line 1, column 9: "):
        parse_yaml("a: [1, 2", "s.yaml")


def test_file_problems_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 9\)"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml(tmp_path)


def test_the_project_params_file_reads(repo_root):
    params = read_yaml(repo_root / "params.yaml")
    assert params["profile"] in params["profiles"]
