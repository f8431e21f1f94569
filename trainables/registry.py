"""One mechanism behind the three registries (families, datasets, metrics), open to user packages.

A name resolves, in this order, to:

1. a built-in, declared in the registry's home: the object, or ``"module:attribute"`` imported on
   first use (so listing the families costs nothing);
2. an object registered in this process with the ``register`` decorator;
3. an entry point of the registry's group (``[project.entry-points."disentangle_study.families"]``
   in a user package's pyproject.toml): ``name = "mypkg.models:MyVAE"``, or a module whose import runs
   ``register`` decorators;
4. a dotted path ``"mypkg.models:MyVAE"`` (``module:attribute``), imported as it stands.

Only forms 1, 3 and 4 reach Ray workers by themselves (a worker imports by name what the driver
resolved): a decorator alone registers in the process that imported its module, so spell such an
object by dotted path in a spec, or publish its module as an entry point. Every failure is a
``RegistryError``: one line naming the registry, the name and what to do.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class RegistryError(UserError):
    """A name that does not resolve, an object of the wrong kind, or two objects under one name."""


def import_path(path: str) -> Any:
    """``"package.module:attribute"`` (attribute may be dotted) -> the object."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise RegistryError(f"{path!r} is not a dotted path of the form 'package.module:Name'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"{path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise RegistryError(f"{path!r}: module {module_name!r} has no {attribute!r}") from None
    return target


class Registry(Mapping[str, T], Generic[T]):
    """Names -> objects of one kind; a read-only mapping over the names it can list.

    ``check(obj)`` returns why ``obj`` is not of this registry's kind (None when it is);
    ``wrap(obj)`` turns a resolved object into what ``get`` returns (e.g. a ``Family``).
    """

    def __init__(
        self,
        kind: str,
        builtins: Mapping[str, Any],
        *,
        group: str,
        check: Callable[[Any], str | None] = lambda obj: None,
        wrap: Callable[[str, Any], T] = lambda key, obj: obj,
    ) -> None:
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._registered: dict[str, Any] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None
        self._check = check
        self._wrap = wrap
        self._resolved: dict[str, T] = {}

    # -- registering ------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: ``@FAMILIES.register("my_vae")`` on a class (or function) of this kind."""

        def decorate(obj: Any) -> Any:
            previous = self._registered.get(name)
            again = previous is not None and _where(previous) == _where(obj)  # a module reloaded
            owner = self._owner(name)
            if owner is not None and not again:
                raise RegistryError(f"{self.kind} {name!r} is already {owner}; choose another name")
            self._reject(name, obj)
            self._registered[name] = obj
            self._resolved.pop(name, None)
            return obj

        return decorate

    # -- resolving --------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object called ``name`` (any of the four forms); RegistryError if none."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._resolved:
            return self._resolved[name]
        obj = self._load(name)
        self._reject(name, obj)
        wrapped = self._wrap(name, obj)
        self._resolved[name] = wrapped
        return wrapped

    def _load(self, name: str) -> Any:
        if name in self._builtins:
            target = self._builtins[name]
            return import_path(target) if isinstance(target, str) else target
        if name in self._registered:
            return self._registered[name]
        if ":" in name:
            return import_path(name)
        entry = self.entry_points().get(name)
        if entry is not None:
            try:
                obj = entry.load()
            except Exception as exc:  # a broken plugin: name it, whatever it raised
                raise RegistryError(
                    f"{self.kind} {name!r}: entry point {entry.value!r} of group {self.group!r} "
                    f"failed to load ({type(exc).__name__}: {exc})"
                ) from None
            if entry.attr is None:  # a module: its import ran the register decorators
                if name not in self._registered:
                    raise RegistryError(
                        f"{self.kind} {name!r}: entry point module {entry.value!r} registered no "
                        f"{self.kind} of that name"
                    )
                return self._registered[name]
            return obj
        raise RegistryError(
            f"unknown {self.kind} {name!r}; known: {sorted(self)} (or a dotted path "
            "'package.module:Name')"
        )

    def _reject(self, name: str, obj: Any) -> None:
        why = self._check(obj)
        if why:
            raise RegistryError(f"{self.kind} {name!r}: {why}")

    def entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """This registry's entry points of installed packages (read once); a clash with a
        built-in or between two packages is a RegistryError."""
        if self._entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for entry in importlib.metadata.entry_points(group=self.group):
                if entry.name in self._builtins:
                    raise RegistryError(
                        f"{self.kind} {entry.name!r}: entry point {entry.value!r} clashes with the "
                        "built-in of that name; rename it in its package's pyproject.toml"
                    )
                other = found.get(entry.name)
                if other is not None and other.value != entry.value:
                    raise RegistryError(
                        f"{self.kind} {entry.name!r}: two installed packages declare it "
                        f"({other.value!r} and {entry.value!r})"
                    )
                found[entry.name] = entry
            self._entry_points = found
        return self._entry_points

    def _owner(self, name: str) -> str | None:
        if name in self._builtins:
            return "a built-in"
        if name in self._registered:
            return f"registered by {_where(self._registered[name])}"
        if self._entry_points is not None and name in self._entry_points:
            return f"an entry point ({self._entry_points[name].value})"
        return None

    def describe(self, name: str, attribute: str = "description") -> str:
        """``attribute`` of the object called ``name``: read from its module's source when it is a
        string literal of the class (so listing the built-ins imports none of them, nor torch),
        else from the object itself."""
        target = self._builtins.get(name)
        if target is None and name not in self._registered:
            entry = self.entry_points().get(name)
            target = entry.value if entry is not None and entry.attr else None
        if isinstance(target, str):
            literal = _literal_attribute(target, attribute)
            if literal is not None:
                return literal
        return str(getattr(self.get(name), attribute, ""))

    # -- the mapping of listable names --------------------------------------------------------
    def _names(self) -> list[str]:
        return sorted({*self._builtins, *self._registered, *self.entry_points()})

    def __getitem__(self, name: str) -> T:
        try:
            return self.get(name)
        except RegistryError as exc:
            raise KeyError(name) from exc

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def listed_names(builtin_names: Iterable[str], group: str) -> list[str]:
    """A registry's listable names without building it (no import of any entry): the built-ins'
    names and the installed packages' entry points of ``group``."""
    return sorted({*builtin_names, *(e.name for e in importlib.metadata.entry_points(group=group))})


def _literal_attribute(path: str, attribute: str) -> str | None:
    """``Class.attribute = "..."`` as written in the source of ``module:Class``; None when it is
    not a literal there (inherited, computed) or the source cannot be read."""
    module_name, _, qualname = path.partition(":")
    try:
        spec = importlib.util.find_spec(module_name)  # imports the parent packages only
        tree = ast.parse(open(spec.origin, encoding="utf-8").read()) if spec and spec.origin else None
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    body = tree.body if tree else []
    for part in qualname.split("."):
        node = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    for statement in body:
        if (
            isinstance(statement, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == attribute for t in statement.targets)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        ):
            return statement.value.value
    return None


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
