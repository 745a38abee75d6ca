"""Single-codebook speech codec over the latent of the system's Piper voice (see README.md here).

`model.Codec`: encode z frames -> tokens, decode tokens -> 22.05 kHz waveform;
`streaming`: packetised decode with left context, look-ahead and crossfade;
`piper_latent`: the voice graph cut into text -> z and z -> waveform; `train`: k-means + WER.
"""
