"""What a family's runs report, declared by the family: its outputs (name, direction, bounds) and
its pictures. Everything that ranks, tables or draws runs reads these declarations instead of
naming a family's outputs.

The driver writes a family's declarations into each trial run (MLflow tag ``outputs``, JSON) and
into the launch record, so readers need neither the family nor torch: nothing here imports torch.
A name's direction: the declaration of that exact name, else the longest declared prefix pattern
(``relation_accuracy_*``), else the metric registry (``trainables.metrics``), the one place that
knows the directions of metric outputs. A ``_sampled`` name (a stochastic encoder's sample) has its
mean's direction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..metrics import SAMPLED

TAG = "outputs"  # the trial run's tag that carries ``Declared.to_tag()``
TAG_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH: a longer tag would be cut, unreadable JSON


@dataclass(frozen=True)
class Output:
    """One final (or, with ``curve``, per-report) value a family reports.

    ``name`` ending in ``*`` declares every name with that prefix (per-factor, per-relation
    breakdowns). ``higher_is_better``: None for references and counts (not ranked). ``primary``:
    what a report leads with; ``detail``: breakdowns a report keeps out of its main tables (they
    stay in summary.csv). ``curve``: a per-report value a learning-curve figure draws.
    ``of_metrics``: a prefix under which the family reports registered metrics' outputs (e.g.
    ``converted_mig``); each keeps its metric's direction (see ``Output.metric_prefix``).
    """

    name: str
    higher_is_better: bool | None
    bounds: tuple[float | None, float | None] | None = None
    description: str = ""
    primary: bool = False
    detail: bool = False
    curve: bool = False
    of_metrics: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.rstrip("*") or "*" in self.name[:-1]:
            raise ValueError(f"output name {self.name!r}: a name, or a prefix ending in one '*'")
        if self.higher_is_better not in (True, False, None):
            raise ValueError(f"output {self.name}: higher_is_better is True, False or None")
        if self.of_metrics and not self.pattern:
            raise ValueError(f"output {self.name}: of_metrics declares a prefix: end it in '*'")
        if self.bounds is not None:
            object.__setattr__(self, "bounds", tuple(self.bounds))
            if len(self.bounds) != 2:
                raise ValueError(f"output {self.name}: bounds are (low, high), None: unbounded")

    @classmethod
    def metric_prefix(cls, prefix: str, description: str = "", **flags: bool) -> Output:
        """Registered metrics' outputs reported under ``prefix``, each in its metric's direction."""
        return cls(f"{prefix}*", None, description=description, of_metrics=True, **flags)

    @property
    def pattern(self) -> bool:
        return self.name.endswith("*")

    @property
    def prefix(self) -> str:
        return self.name.removesuffix("*")

    def matches(self, name: str) -> bool:
        return name.startswith(self.prefix) if self.pattern else name == self.name

    def as_dict(self) -> dict[str, Any]:
        """The non-default fields (a compact tag), ``name`` and ``higher_is_better`` always."""
        out = {"name": self.name, "higher_is_better": self.higher_is_better}
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Declared:
    """The declarations of one family, or merged over the families of a set of runs."""

    outputs: tuple[Output, ...] = ()
    pictures: tuple[str, ...] = ()
    """The PNG artifacts a report shows of each run, best first."""
    metric_directions: tuple[tuple[str, bool | None], ...] = ()
    """The registered metrics' outputs and their directions when the tag was made (at launch):
    a reader ranks by them without loading the metric registry (scikit-learn, SciPy: seconds)."""

    @classmethod
    def of(cls, trainer: Any) -> Declared:
        """A ``Trainer`` subclass's declarations (its ``outputs`` and ``pictures``)."""
        return cls(tuple(getattr(trainer, "outputs", ())), tuple(getattr(trainer, "pictures", ())))

    # -- as data ------------------------------------------------------------------------------
    def as_dict(self, descriptions: bool = True) -> dict[str, Any]:
        outputs = [o.as_dict() for o in self.outputs]
        if not descriptions:
            outputs = [{k: v for k, v in o.items() if k != "description"} for o in outputs]
        out: dict[str, Any] = {"outputs": outputs, "pictures": list(self.pictures)}
        if self.metric_directions:
            out["metric_directions"] = dict(self.metric_directions)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Declared:
        """Declarations read back from a tag or launch record; an unreadable one declares nothing."""
        if not isinstance(data, Mapping):
            return cls()
        known = {f.name for f in fields(Output)}  # a later version's extra keys: ignored
        try:
            outputs = tuple(
                Output(**{k: v for k, v in o.items() if k in known})
                for o in data.get("outputs") or ()
            )
            directions = tuple(
                (str(k), v)
                for k, v in (data.get("metric_directions") or {}).items()
                if v is None or isinstance(v, bool)
            )
            return cls(outputs, tuple(str(p) for p in data.get("pictures") or ()), directions)
        except (AttributeError, TypeError, ValueError):
            return cls()

    def to_tag(self) -> str:
        """Compact JSON under MLflow's tag limit (without descriptions if they do not fit)."""
        for descriptions in (True, False):
            text = json.dumps(self.as_dict(descriptions), separators=(",", ":"))
            if len(text) <= TAG_LIMIT:
                return text
        raise ValueError(f"declared outputs take {len(text)} characters, over {TAG_LIMIT}")

    @classmethod
    def from_tag(cls, text: Any) -> Declared:
        try:
            return cls.from_dict(json.loads(text)) if isinstance(text, str) else cls()
        except json.JSONDecodeError:
            return cls()

    @classmethod
    def merge(cls, many: Iterable[Declared]) -> Declared:
        """One declaration for runs of several families: a name declared twice keeps its first
        declaration; pictures keep each family's order (a new one goes before the first known
        picture that follows it in its family's list)."""
        outputs: dict[str, Output] = {}
        pictures: list[str] = []
        directions: dict[str, bool | None] = {}
        for declared in many:
            for name, higher in declared.metric_directions:
                directions.setdefault(name, higher)
            for output in declared.outputs:
                outputs.setdefault(output.name, output)
            for i, picture in enumerate(declared.pictures):
                if picture in pictures:
                    continue
                after = [p for p in declared.pictures[i + 1 :] if p in pictures]
                pictures.insert(pictures.index(after[0]) if after else len(pictures), picture)
        return cls(tuple(outputs.values()), tuple(pictures), tuple(directions.items()))

    def with_metric_directions(self, directions: Mapping[str, bool | None]) -> Declared:
        """These declarations carrying the registered metrics' ``directions`` (``metrics.
        metric_directions()``), so that the tag made from them answers ``direction`` alone."""
        return replace(self, metric_directions=tuple(directions.items()))

    # -- reading ------------------------------------------------------------------------------
    def find(self, name: str) -> Output | None:
        """The declaration of ``name``: exact, else the longest matching prefix pattern."""
        exact = next((o for o in self.outputs if not o.pattern and o.name == name), None)
        if exact is not None:
            return exact
        patterns = [o for o in self.outputs if o.pattern and o.matches(name)]
        return max(patterns, key=lambda o: len(o.prefix), default=None)

    def direction(self, name: str) -> bool | None:
        """True: higher is better; False: lower; None: unknown or not a score."""
        name = name.removesuffix(SAMPLED)
        output = self.find(name)
        if output is not None and not output.of_metrics:
            return output.higher_is_better
        metric = name if output is None else name.removeprefix(output.prefix)
        recorded = dict(self.metric_directions)
        if metric in recorded:
            return recorded[metric]
        from ..metrics import higher_is_better  # the registry loads on first use

        return higher_is_better(metric)

    def is_detail(self, name: str) -> bool:
        output = self.find(name.removesuffix(SAMPLED))
        return output is not None and output.detail

    @property
    def primary(self) -> list[str]:
        """The names a report leads with, in declaration order."""
        return [o.name for o in self.outputs if o.primary and not o.pattern]

    @property
    def curves(self) -> list[str]:
        return [o.name for o in self.outputs if o.curve and not o.pattern]


def declarations(outputs: Iterable[Output], pictures: Iterable[str] = ()) -> dict[str, Any]:
    """JSON-able declarations a run carries (``Declared.from_dict`` reads them back)."""
    return Declared(tuple(outputs), tuple(pictures)).as_dict()


def direction(name: str, declared: Declared | Iterable[Output] | None = None) -> bool | None:
    """``name``'s direction under ``declared`` (exact, pattern, then the metric registry)."""
    if not isinstance(declared, Declared):
        declared = Declared(tuple(declared or ()))
    return declared.direction(name)


def gather(runs: Iterable[tuple[Any, Any]], registered: Callable[[str], Declared]) -> Declared:
    """Merged declarations of runs given as (``outputs`` tag, ``family`` tag) pairs: a run's own
    tag, else (a run logged before the tag) ``registered(family)``, its family's as registered
    now; a family that no longer resolves declares nothing."""
    found: dict[Any, Declared] = {}
    for tag, family in runs:
        if isinstance(tag, str) and tag:
            key: Any = ("tag", tag)
            if key not in found:
                found[key] = Declared.from_tag(tag)
        elif isinstance(family, str) and family and ("family", family) not in found:
            try:
                found[("family", family)] = registered(family)
            except Exception:  # unknown or broken family: its runs rank by the metric registry
                found[("family", family)] = Declared()
    return Declared.merge(found.values())
