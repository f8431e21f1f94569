"""Where a study's Ray results live: a local or NFS folder, or a URI (``s3://``, ``gs://``, ``file://``).

The driver keeps launch records and reads trial journals there through pyarrow's file systems, so
one code path serves every kind, and Ray is handed the URI itself (never a local folder named
``s3:``). ``StoragePath`` offers the few pathlib operations the runner needs.
"""

from __future__ import annotations

import fnmatch
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from .errors import SpecError


class StoragePath:
    """A path on a pyarrow file system, pathlib-style (``/``, ``name``, ``read_text``, ``glob``)."""

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str = "", query: str = ""):
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.scheme = scheme  # "s3://" etc.; "" on the local file system
        self.query = query  # e.g. "?endpoint_override=...": kept for Ray

    # -- identity ------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def uri(self) -> str:
        """What Ray and people are given: the plain path when local, else the URI."""
        return self.path if self.is_local else f"{self.scheme}{self.path}{self.query}"

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoragePath({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and self.uri == other.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: StoragePath) -> bool:
        return self.uri < other.uri

    def __truediv__(self, name: str) -> StoragePath:
        return StoragePath(self.fs, f"{self.path}/{name}", self.scheme, self.query)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def local(self) -> Path:
        """The local folder (only for local storage: locks and the like)."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local file system")
        return Path(self.path)

    # -- queries -------------------------------------------------------------------------------
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def glob(self, pattern: str) -> list[StoragePath]:
        """Direct children whose name matches ``pattern`` (no recursion)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return [
            StoragePath(self.fs, info.path, self.scheme, self.query)
            for info in self.fs.get_file_info(selector)
            if fnmatch.fnmatchcase(info.base_name, pattern)
        ]

    # -- reading and writing -------------------------------------------------------------------
    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as handle:
            return handle.read().decode()

    def write_text(self, text: str) -> None:
        partial = f"{self.path}.partial-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(partial) as handle:
            handle.write(text.encode())
        self.fs.move(partial, self.path)  # a reader (`study status`) never sees half a record

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def check_writable(self) -> None:
        """A storage the driver cannot write is refused in one line (a local folder is not
        created by the check; a bucket gets one small file, written then deleted)."""
        if self.is_local:
            _check_local_folder(Path(self.path), self.uri)
            return
        probe = self / f".write-check-{uuid.uuid4().hex[:8]}"
        try:
            self.mkdir()
            probe.write_text("ok")
            self.fs.delete_file(probe.path)
        except (OSError, pa.ArrowException) as err:
            raise SpecError(f"--storage {self.uri}: cannot write there ({err})") from None


def _check_local_folder(storage: Path, shown: str) -> None:
    import tempfile

    existing = storage
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError
        with tempfile.TemporaryFile(dir=existing):  # a real write: os.access trusts root blindly
            pass
    except OSError:
        raise SpecError(f"--storage {shown}: {existing} is not a writable folder") from None


def storage_path(text: str | Path | StoragePath) -> StoragePath:
    """``--storage`` as given: a folder (relative to here), or a URI pyarrow knows."""
    if isinstance(text, StoragePath):
        return text
    text = str(text)
    if "://" not in text:
        return StoragePath(pafs.LocalFileSystem(), str(Path(text).expanduser().resolve()))
    scheme = text.split("://", 1)[0] + "://"
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise SpecError(f"--storage {text}: not a storage URI pyarrow can open ({err})") from None
    if isinstance(fs, pafs.LocalFileSystem):  # file:///abs/path
        return StoragePath(fs, str(Path(path).resolve()))
    query = "?" + text.split("?", 1)[1] if "?" in text else ""
    return StoragePath(fs, path, scheme, query)
