"""Speech corpus builder: texts -> TTS voices -> augmentation -> 16 kHz WAVs + JSONL manifests.

`freeze-omni data synth` drives it (see `synth.py`); every training stage reads its manifests.
"""

from freeze_omni.errors import FreezeOmniError


class CorpusError(FreezeOmniError):
    """Bad corpus input the user can fix: missing or empty text file, unknown voice, bad folder."""
