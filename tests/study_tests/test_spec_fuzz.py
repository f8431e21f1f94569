"""Property-style fuzzing of the spec parser: a mutated shipped config is either a valid StudySpec
or a ``SpecError`` whose text is one line naming the file; never another exception.

Reproducible: every case draws from ``random.Random(f"{config}:{case}")`` (string seeds do not
depend on PYTHONHASHSEED), and a failure lists the config, the case and its mutations.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from study.spec import SpecError, StudySpec, apply_overrides, load_spec, parse_spec
from trainables import FAMILIES

CONFIGS = Path(__file__).parents[2] / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"
SHIPPED = [
    QUICKSTART,
    *sorted((CONFIGS / "smoke").glob("*.yaml")),
    *sorted((CONFIGS / "locatello").glob("*.yaml")),
]
BASES = {str(p.relative_to(CONFIGS)): yaml.safe_load(p.read_text()) for p in SHIPPED}
CASES_PER_CONFIG = 30
SOURCE = "fuzz.yaml"


def _cyclic() -> list[Any]:
    """What a YAML anchor can build: ``&a [*a]``."""
    node: list[Any] = []
    node.append(node)
    return node


HOSTILE: list[Any] = [
    None, "", "x", -1, 0, 1e308, float("inf"), float("nan"), [], {}, [1, [2]], {"a": {"b": 1}},
    True, "0:32:0", "../..", "a" * 500, 2**70, -(2**70), "x\ny", b"\x00\xff", 0.5, _cyclic(),
    "x\u2028y", {"x\ny": 1},
]  # fmt: skip
ODD_KEYS: list[Any] = [
    "bogus", "", " ", "é", "x" * 300, "__class__", "model_config", 1, None, True, 2.5, "x\ny",
    # known names in the wrong place (or the right one, with a hostile value)
    "metrics", "seed", "device", "name", "fixed", "sweep", "split", "subset", "options",
]  # fmt: skip
ODD_SPLITS: list[Any] = [
    [], [1.0], [0.5, 0.5], [0.5, 0.25, 0.25, 0.0], ["a", "b", "c"], ["0.5", "0.25", "0.25"],
    [float("nan")] * 3, [float("inf"), 0.5, 0.5], [1e308] * 3, [-1, 1, 1], [True, False, False],
    [1 / 3] * 3, [2**70, 1, 1], [None, None, None], [[0.5], 0.25, 0.25], "0.5,0.25,0.25",
    {"a": 1}, 0.75, None, [0.98, 0.01, 0.01],
]  # fmt: skip
ODD_NAMES: list[Any] = ["..", "a/b", "", " x", "é", "a" * 101, "x\ny", "1abc", "-a", None, 7]
ODD_AXES: list[Any] = [
    5, "abc", None, {"a": 1}, [], [1, "x", None, 2.5, [1], {"a": 1}], [True, 0.5, "1"],
    [float("nan")], [2**70, -1], [[]], "[1, 2]",
]  # fmt: skip
# Paths the shipped configs may lack but the parser reads: set them to something odd.
KNOWN_PATHS: list[tuple[str, ...]] = [
    ("metrics",), ("fixed", "metrics"), ("fixed", "metric_options"), ("fixed", "device"),
    ("fixed", "steps"), ("dataset", "subset"), ("dataset", "options"), ("dataset", "n_samples"),
    ("dataset", "name"), ("resources",), ("resources", "gpu"), ("max_concurrent_trials",),
    ("max_failures",), ("sweep",), ("fixed",), ("dataset",), ("description",),
]  # fmt: skip
KNOWN_VALUES: list[Any] = [
    *HOSTILE,
    ["factor_vae"], ["mig", "mig"], ["sapp"], {"factor_vae": {"votes": 1}}, {"sap": 1},
    {"posX": {"range": 1}}, {"posX": {"range": ["a", "b"]}}, {"posX": {"bins": [["x"]]}},
    {"posX": {"bins": 0}}, {"posX": {"role": "x"}}, {"posX": "0:32:0"}, {"posX": 99},
    {"nope": 1}, {"x\ny": 1}, "weak_disentanglement", "nope", {"path": "../.."}, {"path": 1},
    {"variant": "x"}, "cuda", "cuda:1", "auto", {"cpu": 0}, {"gpu": float("nan")},
]  # fmt: skip


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every dict key path below ``node``; list items follow as (…, index) paths."""
    found: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list) and not _is_cyclic(node):
        for index, value in enumerate(node):
            found.append((*prefix, index))
            found.extend(_paths(value, (*prefix, index)))
    return found


def _is_cyclic(node: list[Any]) -> bool:
    return any(item is node for item in node)


def _get(raw: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _pick_path(rng: random.Random, raw: dict[str, Any]) -> tuple[Any, ...] | None:
    paths = _paths(raw)
    keyed = [p for p in paths if isinstance(_get(raw, p[:-1]), dict)]
    items = [p for p in paths if isinstance(_get(raw, p[:-1]), list)]
    pool = items if items and rng.random() < 0.2 else keyed
    return rng.choice(pool) if pool else None


def _set(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _delete(rng: random.Random, raw: dict[str, Any]) -> str:
    path = _pick_path(rng, raw)
    if path is None:
        return "delete: nothing left"
    del _get(raw, path[:-1])[path[-1]]
    return f"delete {_where(path)}"


def _add_key(rng: random.Random, raw: dict[str, Any]) -> str:
    parents = [()] + [p for p in _paths(raw) if isinstance(_get(raw, p), dict)]
    parent = rng.choice(parents)
    key, value = rng.choice(ODD_KEYS), copy.deepcopy(rng.choice(HOSTILE))
    _get(raw, parent)[key] = value
    return f"add {_where(parent)}[{_show(key)}] = {_show(value)}"


def _replace(rng: random.Random, raw: dict[str, Any]) -> str:
    path = _pick_path(rng, raw)
    if path is None:
        return "replace: nothing left"
    value = copy.deepcopy(rng.choice(HOSTILE))
    _get(raw, path[:-1])[path[-1]] = value
    return f"set {_where(path)} = {_show(value)}"


def _set_known(rng: random.Random, raw: dict[str, Any]) -> str:
    path, value = rng.choice(KNOWN_PATHS), copy.deepcopy(rng.choice(KNOWN_VALUES))
    _set(raw, path, value)
    return f"set {_where(path)} = {_show(value)}"


def _sweep_axis(rng: random.Random, raw: dict[str, Any]) -> str:
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        sweep = raw["sweep"] = {}
    axis = rng.choice([*sweep, "seed", "lr", "bogus"])
    value = copy.deepcopy(rng.choice(ODD_AXES))
    sweep[axis] = value
    return f"set sweep.{axis} = {_show(value)}"


def _split(rng: random.Random, raw: dict[str, Any]) -> str:
    value = copy.deepcopy(rng.choice(ODD_SPLITS))
    _set(raw, ("dataset", "split"), value)
    return f"set dataset.split = {_show(value)}"


def _swap_family(rng: random.Random, raw: dict[str, Any]) -> str:
    family = rng.choice(sorted(f for f in FAMILIES if f != raw.get("family")))
    raw["family"] = family
    return f"set family = {family!r}"


def _rename(rng: random.Random, raw: dict[str, Any]) -> str:
    name = rng.choice(ODD_NAMES)
    raw["name"] = name
    return f"set name = {_show(name)}"


MUTATIONS = [_delete, _add_key, _replace, _set_known, _sweep_axis, _split, _swap_family, _rename]
WEIGHTS = [3, 3, 4, 3, 2, 1, 1, 1]


def _mutate(base: str, case: int) -> tuple[dict[str, Any], list[str]]:
    rng = random.Random(f"{base}:{case}")
    raw = copy.deepcopy(BASES[base])
    steps = [m(rng, raw) for m in rng.choices(MUTATIONS, WEIGHTS, k=rng.choice([1, 1, 2, 3]))]
    return raw, steps


def _check(raw: Any) -> str | None:
    """None if ``parse_spec`` behaved; else what went wrong."""
    try:
        spec = parse_spec(raw, SOURCE)
    except SpecError as err:
        text = str(err)
        if "\n" in text or not text.startswith(f"{SOURCE}: "):
            return f"SpecError not one line starting with {SOURCE!r}: {text!r}"
        return None
    except BaseException as err:  # noqa: B036 (RecursionError, KeyboardInterrupt-likes: all count)
        return f"{type(err).__name__}: {_show(str(err), 300)}"
    if not isinstance(spec, StudySpec) or spec.n_trials < 1 or len(spec.grid()) != spec.n_trials:
        return f"valid spec with n_trials={spec.n_trials}"
    return None


@pytest.mark.parametrize("base", sorted(BASES))
def test_mutated_configs_parse_or_fail_in_one_line(base):
    failures = []
    for case in range(CASES_PER_CONFIG):
        raw, steps = _mutate(base, case)
        problem = _check(raw)
        if problem:
            failures.append(f"{base} case {case}: [{'; '.join(steps)}] -> {problem}")
    assert not failures, f"{len(failures)} bad outcome(s):\n" + "\n".join(failures[:20])


def test_shipped_configs_parse():
    for base, raw in BASES.items():
        assert _check(copy.deepcopy(raw)) is None, base


@pytest.mark.parametrize("raw", [None, [], "x", 1, [{"name": "a"}], _cyclic()], ids=repr)
def test_a_non_mapping_is_refused(raw):
    with pytest.raises(SpecError, match=f"^{SOURCE}: expected a mapping"):
        parse_spec(raw, SOURCE)


OVERRIDE_KEYS = [
    "", ".", "a..b", "fixed.", "sweep.seed.x", "fixed.epochs", "name", "dataset.split", "sweep",
    "fixed.metrics", "metrics", "a.b.c.d", "fixed.lr.x", "name.x", "dataset.subset.posX",
    "resources", "sweep.seed", "family", "fixed", ".fixed", "é", "fixed.epochs=",
]  # fmt: skip
OVERRIDE_VALUES = [
    "[1,", "{a", "!!python/object:os.system 'echo'", "!!python/object/apply:os.system ['echo']",
    "!!python/name:os.system", "", "1", "null", "~", ".inf", ".nan", "-.inf", "[]", "{}",
    "a: b: c", "'unterminated", '"unterminated', "\t", "- a\n- b", "&a [*a]", "*undefined",
    "%YAML 1.1", "---\n---", "2020-01-01", "!!binary aGVsbG8=", "!!set {a}", "1e999", "0x1F",
    "[" * 50, "? a", "=", "a=b", "[0.9, 0.9, 0.9]", "[sap]", "cuda", "..", "{seed: [0, 1]}",
    "!!int x", "!!float x", "@", "`", "|", ">", "{a: *b}", "!!bool x", "!!timestamp x", "!!int",
    "2020-13-45", "!!int 0x", "\x00", "a\x07b", "[" * 3000, "{x\\ny: 1}", "'x\\ny'",
]  # fmt: skip


def _random_override(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(OVERRIDE_VALUES)  # no "=" at all, mostly
    return f"{rng.choice(OVERRIDE_KEYS)}={rng.choice(OVERRIDE_VALUES)}"


def test_random_overrides_fail_as_spec_errors_only():
    failures = []
    for case in range(300):
        rng = random.Random(f"overrides:{case}")
        raw = copy.deepcopy(BASES["quickstart.yaml"])
        overrides = [_random_override(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        shown = [_show(item, 80) for item in overrides]  # the case number reruns the full strings
        try:
            raw = apply_overrides(raw, overrides, SOURCE)
        except SpecError as err:
            if "\n" in str(err):
                failures.append(f"case {case}: {shown} -> SpecError of many lines: {err!s}")
            continue
        except BaseException as err:  # noqa: B036
            failures.append(f"case {case}: {shown} -> {type(err).__name__}: {_show(str(err), 300)}")
            continue
        problem = _check(raw)
        if problem:
            failures.append(f"case {case}: {shown} then parse_spec -> {problem}")
    assert not failures, f"{len(failures)} bad outcome(s):\n" + "\n".join(failures[:20])


PYTHON_TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    "!!python/object/apply:os.system\n  - touch {marker}",
    '!!python/object/new:subprocess.check_call [["touch", "{marker}"]]',
    "!!python/name:os.system",
]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_tags_are_refused_in_a_config_file(tag, tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    value = tag.format(marker=marker)
    text = QUICKSTART.read_text().replace("name: quickstart", f"name: {value}", 1)
    assert text != QUICKSTART.read_text()
    config.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(config)
    assert "\n" not in str(info.value) and "invalid YAML" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_tags_are_refused_in_overrides(tag, tmp_path):
    marker = tmp_path / "pwned"
    override = f"name={tag.format(marker=marker)}"
    with pytest.raises(SpecError, match="not valid YAML"):
        apply_overrides(copy.deepcopy(BASES["quickstart.yaml"]), [override], SOURCE)
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(QUICKSTART, [override])  # what `study run --set` calls
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        "name: !!int x\n",
        "fixed: {epochs: !!bool x}\n",
        "description: !!timestamp x\n",
        "description: 2020-13-45\n",  # an implicit timestamp that is no date
        "fixed: {epochs: !!float ''}\n",
        "name: a\x07b\n",  # a control character: PyYAML's message has two lines
        "[" * 3000 + "]" * 3000 + "\n",
        "1: 2\nname: x\nfamily: ae\n",
        '"x\\ny": 1\nname: x\nfamily: ae\n',
    ],
    ids=lambda text: _show(text, 40),
)
def test_malformed_files_fail_in_one_line(text, tmp_path):
    config = tmp_path / "odd.yaml"
    config.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(config)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{config}:"), message


@pytest.mark.parametrize(
    ("top", "fixed"),
    [(["mig", "dci"], 5), (["mig"], "2020-01-01"), (["mig"], {"a": 1}), ("x\ny", ["sap"]),
     (7, ["mig"]), (["mig"], ["x\ny"])],
    ids=repr,
)  # fmt: skip
def test_metrics_given_twice_with_odd_values(top, fixed):
    raw = copy.deepcopy(BASES["quickstart.yaml"])
    raw["metrics"], raw["fixed"]["metrics"] = top, fixed
    assert _check(raw) is None


NUMBER_MUTATIONS = [True, False, 2**70, 10**30, -(10**12)]


@pytest.mark.parametrize("config", sorted(BASES))
@pytest.mark.parametrize("value", NUMBER_MUTATIONS, ids=repr)
def test_a_boolean_or_huge_number_for_a_number_is_refused_naming_the_key(config, value):
    # Lax parsing took `epochs: true` as 1 and 10**30 epochs as a plan; every numeric key of the
    # config's fixed block, and the dataset's, must now be refused with its name.
    base = BASES[config]
    keys = [("fixed", k) for k, v in (base.get("fixed") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
    keys.append(("dataset", "split_seed"))
    for section, key in keys:
        raw = copy.deepcopy(base)
        raw.setdefault(section, {})[key] = value
        with pytest.raises(SpecError) as err:
            parse_spec(raw, SOURCE)
        message = str(err.value)
        assert key in message and "\n" not in message, (config, key, message)
        assert "Error" not in message.replace("SpecError", ""), message
