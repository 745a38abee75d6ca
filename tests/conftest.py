"""Shared fixtures: tiny in-memory backbones with their own tokenizers, a tiny speech corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from freeze_omni.audio.io import write_wav

pytest_plugins = ["dialogue_support"]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CORPUS = ["hello world, how are you today?", "what is the capital of france", "the answer is paris",
          "one two three four five six seven eight nine ten", "speech goes in, speech comes out"] * 20


@pytest.fixture
def one_thread():
    """Small per-chunk matmuls: on a busy 2-core machine a second thread only adds waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tokenizer(specials: list[str], eos: str, template: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos)
    fast.chat_template = template
    return fast


def tiny_hf_model(family: str):
    """A random transformers causal LM of `family` and a tokenizer made for it, all in memory."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    if family == "llama":
        tokenizer = make_tokenizer(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                                   "<|eot_id|>", LLAMA3, 300)
        config = LlamaConfig(vocab_size=320, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                             num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 64})
        model = LlamaForCausalLM(config)
    else:
        tokenizer = make_tokenizer(["<|im_start|>", "<|im_end|>"], "<|im_end|>", CHATML, 260)
        cls_config, cls_model = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[family]
        config = cls_config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True)
        model = cls_model(config)
        # Random init leaves biases at zero; make them count so a missing bias would be caught.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.5)
    return model.eval(), tokenizer


@pytest.fixture(params=["llama", "qwen2", "qwen3"])
def tiny_family(request):
    return (request.param, *tiny_hf_model(request.param))


@pytest.fixture(scope="session")
def piper_sentences():
    """(train, test) sentences of the system's Piper voice, without sampling noise: Piper draws
    its noise inside the graph, unseeded, so noisy latents would make every codec test a lottery."""
    from freeze_omni.codec.piper_latent import PiperLatent, Scales

    speaker, quiet = PiperLatent(threads=1), Scales(noise=0.0, noise_w=0.0)
    train = speaker.speak("The quick brown fox jumps over the lazy dog near the river bank.", quiet)[0]
    test = speaker.speak("Please call Stella and ask her to bring these things with her from the store.", quiet)[0]
    return train, test


CORPUS_TEXTS = ["yes", "no thanks", "what time is it", "hello there", "seven", "good night"]
CORPUS_KINDS = ["reply", "reply", "question", "question", "statement", "statement"]  # as data synth labels them


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for split in ("train", "dev"):
        lines = []
        for i, text in enumerate(CORPUS_TEXTS):
            audio = (0.1 * rng.standard_normal(int(16000 * (0.6 + 0.1 * i)))).astype(np.float32)
            write_wav(root / split / f"{i}.wav", audio)
            seconds = audio.size / 16000
            lines.append(json.dumps({"audio": f"{split}/{i}.wav", "text": text, "duration": seconds,
                                     "kind": CORPUS_KINDS[i], "speech_start": 0.1, "speech_end": seconds - 0.1}))
        (root / f"{split}.jsonl").write_text("\n".join(lines))
    return root
