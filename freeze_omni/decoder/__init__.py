"""Speech decoder: phoneme ids (+ the LLM's hidden states) -> codec tokens, streamed (see README.md here).

`model`: phoneme encoder, NAR prefix decoder, AR decoder; `alignment`: tokens interleaved with
ADVANCE/STOP; `generate`: `DecoderState` and one symbol per step; `onnx_step`: the AR step on ONNX
Runtime for inference; `sampling`: legal moves, repetition penalty, top-k; `speaker`: the
dialogue's `Speaker`; `speech`: whole-text synthesis;
`targets`/`dataset`/`prefix_data`/`answers`: training data from the voice and the frozen LLM;
`weights`/`export`: fp16 safetensors.
"""
