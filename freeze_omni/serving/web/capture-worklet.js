// Microphone capture in the audio thread: mono input at the context's rate -> 16 kHz PCM16,
// posted to the page in 32 ms frames (512 samples, one VAD window), so the server hears talk-over
// before a whole 160 ms chunk is in. Downsampling averages the input samples that fall into each
// output sample's interval (a box low-pass), enough for speech.
const FRAME_SAMPLES = 512;

class Capture16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.pending = new Float32Array(0);
    this.pos = 0; // fractional read position in `pending`
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    const joined = new Float32Array(this.pending.length + input.length);
    joined.set(this.pending);
    joined.set(input, this.pending.length);
    let pos = this.pos;
    while (Math.ceil(pos + this.ratio) <= joined.length) {
      const start = Math.floor(pos), end = Math.max(start + 1, Math.floor(pos + this.ratio));
      let sum = 0;
      for (let i = start; i < end; i++) sum += joined[i];
      const v = Math.max(-1, Math.min(1, sum / (end - start)));
      this.frame[this.filled++] = v < 0 ? v * 32768 : v * 32767;
      if (this.filled === this.frame.length) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
      pos += this.ratio;
    }
    const used = Math.floor(pos);
    this.pending = joined.slice(used);
    this.pos = pos - used;
    return true;
  }
}

registerProcessor("capture-16k", Capture16k);
