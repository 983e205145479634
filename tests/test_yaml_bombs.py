"""YAML bombs and oversized input: every YAML read is bounded (size, depth, alias expansion) and
fails with one short line and exit code 2, fast and with little output."""

from __future__ import annotations

import json
import time

import pytest

from conftest import TINY, cli
from imgclf.config import build_config
from imgclf.errors import ConfigError
from imgclf.safe_yaml import MAX_BYTES, YAMLLimitError, load_yaml, read_yaml_file
from imgclf.training import loop as _warm_imports  # noqa: F401  (train imports torch first: keep it out of the timings)


def _bomb(levels: int = 9) -> str:
    """The "billion laughs": each level lists the previous one 9 times (9**9 values in ~400 bytes)."""
    lines = ["a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


DEEP_FLOW = "[" * 20_000 + "]" * 20_000
DEEP_BLOCK = "- " * 20_000 + "x\n"  # block sequences in compact form, one inside the next


def _cli(args: list, capsys) -> tuple[int, str, float]:
    started = time.monotonic()
    code, out, err = cli(args, capsys)
    return code, out + err, time.monotonic() - started


def _assert_one_line(code: int, output: str, seconds: float, fragment: str) -> None:
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, lines[:3]
    assert len(lines[0]) < 300 and fragment in lines[0]
    assert len(output) < 10_000 and "Traceback" not in output
    assert seconds < 5  # regression guard: before the bound this ran > 60 s and wrote hundreds of MB


def test_the_bomb_is_the_small_file_from_the_report():
    assert len(_bomb().encode()) <= 460


def test_alias_bomb_config_ends_at_once_with_one_line(tmp_path, tiny_dataset, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text("train:\n  lr: 0.1\n" + _bomb())
    code, output, seconds = _cli(["train", tiny_dataset, "--config", config, "--out", tmp_path / "run"], capsys)
    _assert_one_line(code, output, seconds, "alias bomb")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", [DEEP_FLOW, DEEP_BLOCK], ids=["flow", "block"])
def test_yaml_nested_20000_deep_gives_one_line_not_recursion_error(text, tmp_path, tiny_dataset, capsys):
    config = tmp_path / "deep.yaml"
    config.write_text(text)
    code, output, seconds = _cli(["train", tiny_dataset, "--config", config, "--out", tmp_path / "run"], capsys)
    _assert_one_line(code, output, seconds, "nested deeper than")


def test_compare_on_a_run_whose_config_is_an_alias_bomb_ends_fast(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "bombed"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(_bomb())
    (run_dir / "summary.json").write_text(json.dumps({"val_accuracy": 0.5}))
    code, output, seconds = _cli(["compare", run_dir], capsys)
    _assert_one_line(code, output, seconds, "alias bomb")


def test_alias_bomb_in_a_set_value_is_refused(tmp_path, tiny_dataset, capsys):
    flow = "[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d]]"
    code, output, seconds = _cli(
        ["train", tiny_dataset, "--set", f"tta.views={flow}", "--out", tmp_path / "run"], capsys
    )
    _assert_one_line(code, output, seconds, "--set tta.views")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("&a [*a]", "recursive alias"),
        ("a: &a {b: 1}\nc: [" + ", ".join(["*a"] * 6000) + "]", "over 10,000 values"),
        ("x: [" + ", ".join(["1"] * 12000) + "]", "over 10,000 values"),
    ],
)
def test_recursive_and_oversized_documents_are_refused(text, problem):
    with pytest.raises(YAMLLimitError, match=problem):
        load_yaml(text)


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="is over"):
        read_yaml_file(path, what="config file")


def test_ordinary_yaml_still_reads_with_anchors_and_merge_keys():
    text = "base: &base {lr: 0.1, epochs: 3}\ntrain:\n  <<: *base\n  epochs: 5\nviews: [identity, hflip]\n"
    assert load_yaml(text) == {
        "base": {"lr": 0.1, "epochs": 3},
        "train": {"lr": 0.1, "epochs": 5},
        "views": ["identity", "hflip"],
    }


def test_a_long_bad_value_is_cut_in_the_error_line():
    with pytest.raises(ConfigError) as exc:
        build_config({"data": {"augment": "x" * 100_000}})
    assert len(str(exc.value)) < 300 and "data.augment" in str(exc.value)


def test_hundreds_of_problems_print_at_most_21_lines(tmp_path, tiny_dataset, capsys):
    config = tmp_path / "many.yaml"
    config.write_text("train:\n" + "".join(f"  unknown_{i}: 1\n" for i in range(300)))
    code, output, _ = _cli(
        ["train", tiny_dataset, "--config", config, *[a for o in TINY for a in ("--set", o)]], capsys
    )
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 21 and lines[-1].endswith("and 280 more problem(s)")
    assert all(len(line) < 300 for line in lines)
