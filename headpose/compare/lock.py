"""Whether a commit's results belong to the files it holds: its ``dvc.lock`` against its tree.

A commit made after editing code or params without re-running the pipeline carries the
``dvc.lock`` (and metrics) of the older code. :func:`stale_dependency` finds that for the stage
that wrote a metrics file and every stage upstream of it (a stage whose output another's
dependency is, in the lock): each dependency the lock records with DVC 3's ``hash: md5`` and
that git holds at the commit is hashed as DVC hashes it, and each recorded param is read from
the params file at the commit; the first that differs is returned. DVC's hash of a file is the
MD5 of its bytes; of a folder, ``<md5>.dir``: the MD5 of the JSON list of its files'
``{"md5", "relpath"}`` sorted by path (``dvc_data``'s ``Tree.digest``). Git never holds what
``.dvcignore`` excludes here (``__pycache__/``, ``.cache/``), so the folder's files in git are
the ones DVC hashed. Not checked: dependencies git does not hold (DVC outputs, data outside the
repository: their own stages are checked), folders holding a link or submodule, and entries of
DVC 2 locks (``md5`` without ``hash: md5``, hashed after a CRLF conversion of text files).

The workspace is checked by DVC itself (:func:`stale_workspace`: ``dvc status`` of the same
stages, only the dependencies and params it reports modified or new: an output not checked out
is not a sign of older code).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from headpose.errors import HeadposeError, clip
from headpose.io.text import MIB, read_text_file

LOCK_FILE = "dvc.lock"
MAX_SHOWN_CHARS = 60  # a param value longer than this is shortened in the message
LOCK_MAX_BYTES = 64 * MIB  # a dvc.lock: a few kB per stage


@dataclass(frozen=True)
class StaleDependency:
    """A dependency whose recorded hash (or param value) is not what the commit holds."""

    path: str  # the file or folder, or ``params.yaml:key``
    recorded: str
    held: str  # for the workspace, what dvc status says of it ("modified")
    in_workspace: bool = False

    def describe(self) -> str:
        if self.in_workspace:
            return f"dvc status: {self.path} {self.held} since {LOCK_FILE} was written"
        return f"{LOCK_FILE} records {self.recorded} for {self.path}, the commit holds {self.held}"


class GitTree:
    """The files of one repository's commits (git's object database), each blob's DVC MD5
    computed once however many commits hold it."""

    def __init__(self, repo_root: str | Path) -> None:
        self.repo_root = Path(repo_root)
        self.prefix = self._git("rev-parse", "--show-prefix").decode().strip()
        self._md5: dict[str, str] = {}

    def _git(self, *arguments: str, stdin: bytes | None = None) -> bytes:
        try:
            result = subprocess.run(
                ["git", *arguments], cwd=self.repo_root, input=stdin, capture_output=True
            )
        except OSError as error:
            raise HeadposeError(f"cannot run git in {self.repo_root}: {error}") from None
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise HeadposeError(
                f"git {arguments[0]} in {self.repo_root}: {message[-1] if message else 'failed'}"
            )
        return result.stdout

    def files(self, rev: str) -> dict[str, tuple[str, str]]:
        """``{path: (mode, blob)}`` of the commit, paths relative to the DVC repository."""
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", rev, "--", self.prefix or ".")
        files = {}
        for line in filter(None, listing.split(b"\0")):
            info, path = line.split(b"\t", 1)
            mode, _, blob = info.decode().split(" ")
            name = path.decode("utf-8", errors="surrogateescape")
            files[name.removeprefix(self.prefix)] = (mode, blob)
        return files

    def read(self, rev: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``rev``, None where the commit has no such file."""
        try:
            return self._git("show", f"{rev}:{self.prefix}{path}")
        except HeadposeError:
            return None

    def md5s(self, blobs: list[str]) -> dict[str, str]:
        """The MD5 of each blob's bytes (``git cat-file --batch``, once per blob)."""
        missing = sorted(set(blobs) - self._md5.keys())
        if missing:
            output = self._git(
                "cat-file", "--batch", stdin="".join(f"{b}\n" for b in missing).encode()
            )
            position = 0
            for blob in missing:
                header_end = output.index(b"\n", position)
                size = int(output[position:header_end].split(b" ")[2])
                start = header_end + 1
                self._md5[blob] = hashlib.md5(output[start : start + size]).hexdigest()
                position = start + size + 1  # the content is followed by a line break
        return {blob: self._md5[blob] for blob in blobs}


def dvc_md5(tree: GitTree, files: dict[str, tuple[str, str]], path: str) -> str | None:
    """DVC's MD5 of the file or folder ``path`` as the commit holds it (``files``: its
    :meth:`GitTree.files`), None where git does not hold it or cannot say (a link, a submodule)."""
    path = path.rstrip("/")
    if path in files:
        mode, blob = files[path]
        return tree.md5s([blob])[blob] if mode in ("100644", "100755") else None
    inside = {name: entry for name, entry in files.items() if name.startswith(f"{path}/")}
    if not inside or any(mode not in ("100644", "100755") for mode, _ in inside.values()):
        return None
    md5s = tree.md5s([blob for _, blob in inside.values()])
    entries = sorted(
        (
            {"md5": md5s[blob], "relpath": name[len(path) + 1 :]}
            for name, (_, blob) in inside.items()
        ),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def _stages_behind(stages: dict, metrics_file: str) -> list[str]:
    """The stage whose outputs include ``metrics_file`` and every stage upstream of it."""

    def outs(stage: str) -> list[str]:
        return [out["path"].rstrip("/") for out in stages[stage].get("outs") or []]

    def feeds(out: str, dep: str) -> bool:
        return dep == out or dep.startswith(f"{out}/") or out.startswith(f"{dep}/")

    found = [name for name in stages if metrics_file in outs(name)]
    index = 0
    while index < len(found):
        for dep in stages[found[index]].get("deps") or []:
            for name in stages:
                if name not in found and any(feeds(out, dep["path"]) for out in outs(name)):
                    found.append(name)
        index += 1
    return found


def _param_value(params: object, key: str) -> tuple[bool, object]:
    """(found, value) of a dotted key in a params file's data."""
    value = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _shown(value: object) -> str:
    """A recorded or held param value as its JSON text, cut for a message (:func:`clip`)."""
    return clip(json.dumps(value, sort_keys=True, default=str), MAX_SHOWN_CHARS)


def stale_dependency(tree: GitTree, rev: str, metrics_file: str) -> StaleDependency | None:
    """The first dependency or param of the stages behind ``metrics_file`` whose record in the
    commit's ``dvc.lock`` differs from what the commit holds; None when all agree (or the
    commit has no lock, or no stage writes the file)."""
    text = tree.read(rev, LOCK_FILE)
    if text is None:
        return None
    try:
        stages = (yaml.safe_load(text) or {}).get("stages") or {}
    except (yaml.YAMLError, AttributeError):
        return StaleDependency(LOCK_FILE, "stages", "no readable YAML")
    files = tree.files(rev)
    params_files: dict[str, object] = {}
    for stage in _stages_behind(stages, metrics_file):
        for dep in stages[stage].get("deps") or []:
            if dep.get("hash") != "md5" or "md5" not in dep:
                continue  # a DVC 2 entry (see the module docstring)
            held = dvc_md5(tree, files, dep["path"])
            if held is not None and held != dep["md5"]:
                return StaleDependency(dep["path"], dep["md5"], held)
        for params_file, values in (stages[stage].get("params") or {}).items():
            if params_file not in params_files:
                data = tree.read(rev, params_file)
                try:
                    params_files[params_file] = None if data is None else yaml.safe_load(data)
                except yaml.YAMLError:
                    params_files[params_file] = None
            if params_files[params_file] is None:
                continue  # not in git or not YAML/JSON: not checked
            for key, recorded in (values or {}).items():
                found, held = _param_value(params_files[params_file], key)
                if not found or held != recorded:
                    return StaleDependency(
                        f"{params_file}:{key}",
                        _shown(recorded),
                        _shown(held) if found else "no such key",
                    )
    return None


def stale_workspace(repo_root: str | Path, metrics_file: str) -> StaleDependency | None:
    """The first dependency or param of the stages behind ``metrics_file`` that ``dvc status``
    reports modified (or new) in the workspace; None when none is. ``dvc status --json`` runs
    in the repository (DVC's Python API resolves stage names against the current folder)."""
    lock = Path(repo_root) / LOCK_FILE
    try:
        text = read_text_file(lock, LOCK_MAX_BYTES, "DVC lock file")
        stages = (yaml.safe_load(text) or {}).get("stages") or {}
    except (HeadposeError, yaml.YAMLError, AttributeError):
        return None  # no lock: nothing recorded to be stale
    behind = _stages_behind(stages, metrics_file)
    if not behind:
        return None
    command = [sys.executable, "-m", "dvc", "status", "--json", *behind]
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True)
    try:
        status = json.loads(result.stdout) if result.returncode == 0 else None
    except json.JSONDecodeError:
        status = None
    if not isinstance(status, dict):
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no status"]
        raise HeadposeError(f"cannot check the workspace of {repo_root}: {lines[-1]}")
    for stage in behind:
        for entry in status.get(stage) or []:
            changed = entry.get("changed deps", {}) if isinstance(entry, dict) else {}
            for path, state in changed.items():
                if isinstance(state, dict):  # a params file: {key: state}
                    for key, key_state in state.items():
                        return StaleDependency(f"{path}:{key}", "", key_state, in_workspace=True)
                elif state in ("modified", "new"):
                    return StaleDependency(path, "", state, in_workspace=True)
    return None
