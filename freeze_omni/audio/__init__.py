"""Audio front end: file and PCM input, fbank features (offline and streaming), voice activity."""

SAMPLE_RATE = 16000
