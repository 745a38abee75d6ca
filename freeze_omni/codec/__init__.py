"""Single-codebook speech codec over the latent of the system's Piper voice (see README.md here).

`model.Codec`: encode latent frames -> tokens, decode tokens -> 22.05 kHz waveform (16 kHz too);
`streaming`: packetised decode with left context, look-ahead and crossfade (explicit state);
`piper_latent`: the voice graph cut into text -> latents, flow and generator;
`train`: latent extraction, k-means, resynthesis WER (`freeze-omni train codec`).
"""
